FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY profiles ./profiles
COPY services ./services
COPY examples ./examples
RUN pip install --no-cache-dir -e .
USER nobody
EXPOSE 8080
CMD ["arop", "serve", "--host", "0.0.0.0", "--port", "8080"]
