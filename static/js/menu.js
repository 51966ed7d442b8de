// The nav collapses behind a Menu button on narrow screens (CSS decides when the button shows).
(function () {
  const button = document.querySelector(".nav-toggle");
  if (!button) return;
  const nav = button.closest(".nav");
  button.addEventListener("click", () => {
    const open = !nav.classList.contains("open");
    nav.classList.toggle("open", open);
    button.setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && nav.classList.contains("open")) {
      nav.classList.remove("open");
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  });
})();

// A box that scrolls (a wide table, a long log) must be reachable by keyboard: give each
// one that overflows a tab stop, now and after every htmx swap.
(function () {
  function focusableScrollers(root) {
    (root || document).querySelectorAll("pre, table, .keys-table, .scroll").forEach((el) => {
      const style = getComputedStyle(el);
      const scrolls = /(auto|scroll)/.test(style.overflowX + style.overflowY)
        && (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1);
      if (scrolls && !el.hasAttribute("tabindex")) {
        el.setAttribute("tabindex", "0");
        if (!el.hasAttribute("role") && el.tagName !== "TABLE") el.setAttribute("role", "region");
        if (!el.hasAttribute("aria-label") && el.tagName !== "TABLE") el.setAttribute("aria-label", "Scrollable content");
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => focusableScrollers());
  else focusableScrollers();
  document.addEventListener("htmx:afterSwap", (event) => focusableScrollers(event.target));
  window.addEventListener("resize", () => focusableScrollers());
})();
