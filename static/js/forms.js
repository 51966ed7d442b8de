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
  // Actions that discard work ask first: a submit button (or a form) with data-confirm shows
  // the question; data-requires names a field (e.g. the reason) that must not be empty.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    const button = event.submitter;
    const source = button && button.dataset && button.dataset.confirm ? button : form;
    const question = source.dataset ? source.dataset.confirm : "";
    if (!question) return;
    const required = source.dataset.requires ? form.elements.namedItem(source.dataset.requires) : null;
    if (required && !String(required.value || "").trim()) {
      event.preventDefault();
      required.setAttribute("aria-invalid", "true");
      required.focus();
      if (required.setCustomValidity) {
        required.setCustomValidity("Please give the reason.");
        required.reportValidity();
        required.addEventListener("input", () => required.setCustomValidity(""), { once: true });
      }
      return;
    }
    if (!window.confirm(question)) event.preventDefault();
  }, true);
})();
