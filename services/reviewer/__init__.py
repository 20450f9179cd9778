"""The reviewer web UI (DESIGN.md §3 "Reviewer UI"): server-rendered pages with htmx, on the
same service methods as the reviewer API. Eligibility is always the service's answer."""
