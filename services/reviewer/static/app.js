// Progressive enhancements only: every page works without this file.
// A form marked data-once disables its buttons once submitted, so that a double click sends
// one decision (the server is idempotent for a repeat anyway).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-once")) return;
  if (form.dataset.sent) { event.preventDefault(); return; }
  form.dataset.sent = "1";
  setTimeout(() => form.querySelectorAll("button").forEach((b) => { b.disabled = true; b.setAttribute("aria-busy", "true"); }), 0);
});
