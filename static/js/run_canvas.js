// The live run page's diagram, side panel and timeline, over FlowCanvas (flowcanvas.js, read-only).
//
// Nodes are the spec's step ids; each is decorated from the server's node states
// (#run-states, then /runs/<id>/canvas.json): status, duration, tokens, cost, a loop's
// iteration counter. live_run.js applies the run's websocket events once each, in order, and
// re-announces them as "run-event" DOM events: a step event changes its node's status at once,
// then the states are fetched again (coalesced: one request in flight, one queued at most).
// Clicking a node (or a step card's "Details" button) loads the step's panel, server-rendered
// and escaped; the panel is fetched again when its step changes, unless the fork form is being
// edited. Text from models and tools only reaches the page through those escaped fragments.
(function () {
  "use strict";

  const box = document.getElementById("run-canvas");
  const panel = document.getElementById("step-panel");
  if (!box || !panel) return;

  const STEP_STATUS = {
    "step.started": "running", "step.retrying": "running", "step.succeeded": "succeeded", "step.failed": "failed",
    "step.waiting_review": "waiting", "step.cancelled": "cancelled", "step.skipped": "skipped",
    "step.reused": "succeeded", "step.edited": "succeeded",
  };

  function readJson(id, fallback) {
    const el = document.getElementById(id);
    try {
      return el ? JSON.parse(el.textContent) : fallback;
    } catch (err) {
      return fallback;
    }
  }

  const spec = readJson("run-spec", { steps: [] });
  let states = readJson("run-states", {});
  let panelKey = null;
  const stats = (window.__runCanvas = { refreshes: 0, panels: 0, events: 0 });

  function formatSeconds(value) {
    if (value === null || value === undefined) return "";
    if (value < 10) return value.toFixed(2) + " s";
    if (value < 60) return value.toFixed(1) + " s";
    return Math.floor(value / 60) + " min " + String(Math.floor(value % 60)).padStart(2, "0") + " s";
  }

  function formatTokens(value) {
    if (!value) return "";
    return (value >= 1000 ? (value / 1000).toFixed(1) + "k" : String(value)) + " tok";
  }

  function formatCost(text) {
    const value = parseFloat(text);
    if (!value) return "";
    return "$" + (value < 0.01 ? value.toFixed(4) : value.toFixed(2));
  }

  function decorate(nodeId) {
    const state = states[nodeId];
    if (!state) return { status: "pending" };
    const badges = [formatSeconds(state.duration_s), formatTokens(state.tokens), formatCost(state.cost_usd)];
    if (state.tool_calls) badges.push(state.tool_calls + " tool" + (state.tool_calls > 1 ? "s" : ""));
    return {
      status: state.status || "pending",
      badges: badges.filter(Boolean),
      counter: state.counter || "",
      className: state.reused_from ? "reused" : "",
      title: state.key + ": " + (state.status || "pending") + (state.reused_from ? " (reused from run #" + state.reused_from + ")" : ""),
    };
  }

  function coalesced(run) {
    let inFlight = false;
    let again = false;
    return function trigger() {
      if (inFlight) {
        again = true;
        return;
      }
      inFlight = true;
      Promise.resolve()
        .then(run)
        .catch(() => {})
        .finally(() => {
          inFlight = false;
          if (again) {
            again = false;
            trigger();
          }
        });
    };
  }

  function get(url, asJson) {
    return fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" }).then((response) => {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return asJson ? response.json() : response.text();
    });
  }

  let canvas = null;
  if (window.FlowCanvas && typeof window.FlowCanvas.create === "function") {
    canvas = window.FlowCanvas.create(box, {
      readOnly: true,
      label: "Pipeline diagram with live step states",
      decorate: decorate,
      onSelect: (nodeId) => {
        if (!nodeId) return;
        const state = states[nodeId];
        openPanel(state && state.key ? state.key : nodeId);
      },
    });
    canvas.render(spec);
  } else {
    box.textContent = "The diagram could not be drawn (flowcanvas.js did not load); the steps are listed below.";
  }
  box.dataset.ready = canvas ? "1" : "0";

  const refreshStates = coalesced(() =>
    get(box.dataset.canvasUrl, true).then((data) => {
      states = data.nodes || {};
      box.dataset.seq = String(data.seq);
      stats.refreshes += 1;
      if (canvas) canvas.refresh();
    })
  );

  function editingFork() {
    const form = panel.querySelector("#fork-form");
    return Boolean(form && (form.contains(document.activeElement) || form.dataset.dirty === "1"));
  }

  function loadPanel(key) {
    return get(box.dataset.panelUrl.replace("STEPKEY", encodeURIComponent(key)), false).then((html) => {
      if (panelKey !== key) return;
      panel.innerHTML = html; // server-rendered, escaped
      panel.dataset.stepKey = key;
      stats.panels += 1;
      const form = panel.querySelector("#fork-form");
      if (form) form.addEventListener("input", () => { form.dataset.dirty = "1"; });
      document.dispatchEvent(new CustomEvent("run-panel-loaded", { detail: { key: key } }));
    });
  }

  const refreshPanel = coalesced(() => (panelKey && !editingFork() ? loadPanel(panelKey) : null));

  function openPanel(key) {
    panelKey = key;
    if (canvas) canvas.select(key.split("#")[0]);
    loadPanel(key).catch(() => {
      panel.textContent = "This step could not be loaded; try again.";
    });
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("[data-panel-key]");
    if (!button) return;
    event.preventDefault();
    openPanel(button.dataset.panelKey);
    if (button.classList.contains("step-open")) panel.scrollIntoView({ block: "nearest", behavior: "smooth" });
  });

  document.addEventListener("run-event", (e) => {
    const event = e.detail || {};
    if (event.seq === null || event.seq === undefined) return; // streamed text: live_run.js paints it
    stats.events += 1;
    const key = event.step_key || "";
    const stepId = key.split("#")[0];
    if (STEP_STATUS[event.type] && stepId) {
      const state = states[stepId] || (states[stepId] = { keys: [] });
      state.status = STEP_STATUS[event.type];
      state.key = key;
      if (canvas) canvas.refresh();
    }
    refreshStates();
    if (panelKey && key && (key === panelKey || stepId === panelKey.split("#")[0])) refreshPanel();
  });
})();
