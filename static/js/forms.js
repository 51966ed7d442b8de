// Small form behaviours that would otherwise be inline handlers, which the
// Content-Security-Policy forbids: auto-submitting selects, and forms that navigate.
(function () {
  document.addEventListener("change", (event) => {
    const el = event.target;
    if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit") && el.form) el.form.submit();
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.gotoPrefix) return;
    event.preventDefault();
    const field = form.elements.namedItem(form.dataset.gotoField || "base");
    location.href = form.dataset.gotoPrefix + encodeURIComponent(field ? field.value : "") + "/";
  });
})();
