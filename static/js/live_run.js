// Live runs pages, without reloads.
//
// Runs list ([data-live-runs]): nav.js's team socket re-dispatches every message as a
// "team-event" DOM event; on a run change the table is fetched again (the same URL, as a
// fragment) and swapped in. Requests are coalesced: one in flight, one more queued at most.
//
// Run page ([data-live-run]): a socket on /ws/runs/<id>/?after=<last seq>. Persisted events
// (seq set) are applied once, in order: seq <= last is ignored, so what arrives both from
// the catch-up and live is applied once. Each event updates the step's status at once and
// marks its card for a fetch of server-rendered fragments (markdown goes through the
// server's sanitiser, never through the browser). Streamed text (llm.delta, seq null) is
// appended as text to the step's stream box. On a dropped socket it reconnects with
// ?after=<last seq>. Text from models and tools only ever enters the page via textContent
// or the server's escaped fragments.
(function () {
  "use strict";

  const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;

  function domId(key) {
    return "step-" + key.replace(/#/g, "--"); // same rule as dashboard/runs/tree.py: dom_id
  }

  function formatSeconds(value) {
    if (value < 10) return value.toFixed(2) + " s";
    if (value < 60) return value.toFixed(1) + " s";
    const minutes = Math.floor(value / 60);
    const secs = Math.floor(value % 60);
    if (minutes < 60) return minutes + " min " + String(secs).padStart(2, "0") + " s";
    return Math.floor(minutes / 60) + " h " + String(minutes % 60).padStart(2, "0") + " min";
  }

  // Durations of what is still running tick in the browser.
  function tick() {
    document.querySelectorAll("[data-since]").forEach((el) => {
      const since = Date.parse(el.dataset.since);
      if (!Number.isNaN(since)) el.textContent = formatSeconds(Math.max(0, (Date.now() - since) / 1000));
    });
  }

  // A fetch that is never run twice at once; calls made meanwhile fold into one more run.
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

  function getFragment(url) {
    return fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" }).then((response) => {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    });
  }

  // --- runs list ----------------------------------------------------------------------------

  function initList(box) {
    const refresh = coalesced(() =>
      getFragment(location.pathname + location.search).then((html) => {
        box.innerHTML = html;
        tick();
      })
    );
    document.addEventListener("team-event", (e) => {
      if (e.detail && e.detail.type === "team_event") refresh();
    });
  }

  // --- one run --------------------------------------------------------------------------------

  const RUN_STATUS = {
    "run.queued": "queued", "run.resume_requested": "queued", "run.started": "running", "run.resumed": "running",
    "run.succeeded": "succeeded", "run.failed": "failed", "run.waiting_review": "waiting_review",
    "run.cancelled": "cancelled",
  };
  // As RunStatus's labels in orchestrator/models.py.
  const RUN_LABEL = {
    queued: "Queued", running: "Running", waiting_review: "Waiting for review", succeeded: "Succeeded",
    failed: "Failed", cancelled: "Cancelled",
  };
  const STEP_STATUS = {
    "step.started": "running", "step.retrying": "running", "step.succeeded": "succeeded", "step.failed": "failed",
    "step.waiting_review": "waiting_review", "step.cancelled": "cancelled", "step.skipped": "skipped",
    "step.reused": "succeeded", "step.edited": "succeeded",
  };
  // After these nothing more streams for the step (or, for run-level ones, for any step).
  const STREAM_ENDS = new Set(["step.failed", "step.waiting_review", "step.cancelled", "step.succeeded"]);
  const RUN_STOPS = new Set(["run.failed", "run.waiting_review", "run.cancelled", "run.succeeded"]);

  function initRun(root) {
    const runId = root.dataset.runId;
    const fragmentsUrl = root.dataset.fragmentsUrl;
    let lastSeq = parseInt(root.dataset.after, 10) || 0;
    let backoff = 500;
    const streams = new Map(); // step key -> {turn, text}: the model text streaming now
    const dirtySteps = new Set();
    let dirtyTree = false;
    // For tests and debugging: what this page has applied.
    const stats = (window.__liveRun = { lastSeq: lastSeq, applied: 0, gaps: 0, deltas: 0, fetches: 0 });

    function card(key) {
      return document.getElementById(domId(key));
    }

    // The step's card and, when it is open, the side panel (run_canvas.js) show the stream.
    function streamBoxes(key) {
      return Array.from(document.querySelectorAll(".live-stream")).filter((el) => el.dataset.streamFor === key);
    }

    function paintStream(key) {
      const stream = streams.get(key);
      if (!stream) return;
      streamBoxes(key).forEach((el) => {
        el.textContent = stream.text;
        el.hidden = false;
      });
    }

    // A turn that failed or was stopped (budget, cancel) streams no more: its box is cleared.
    function endStream(key) {
      streams.delete(key);
      streamBoxes(key).forEach((el) => {
        el.textContent = "";
        el.hidden = true;
      });
    }

    function setStatus(el, status, label) {
      if (!el) return;
      el.textContent = label || status;
      el.className = el.className.replace(/\bstatus-\S+/g, "").trim() + " status-" + status;
    }

    const refresh = coalesced(() => {
      const params = new URLSearchParams();
      if (dirtyTree) params.set("tree", "1");
      else dirtySteps.forEach((key) => params.append("step", key));
      const keys = Array.from(dirtySteps);
      const tree = dirtyTree;
      dirtySteps.clear();
      dirtyTree = false;
      stats.fetches += 1;
      return getFragment(fragmentsUrl + "?" + params.toString()).then(swap, (err) => {
        keys.forEach((k) => dirtySteps.add(k)); // try again with the next event
        dirtyTree = dirtyTree || tree;
        throw err;
      });
    });

    function swap(html) {
      const template = document.createElement("template");
      template.innerHTML = html;
      Array.from(template.content.children).forEach((el) => {
        const old = el.id && document.getElementById(el.id);
        if (old) old.replaceWith(el);
      });
      streams.forEach((_, key) => paintStream(key));
      root.dataset.lastSeq = String(lastSeq);
      tick();
    }

    function applyDelta(event) {
      const data = event.data || {};
      let stream = streams.get(event.step_key);
      if (!stream || stream.turn !== data.turn) {
        stream = { turn: data.turn, text: "" };
        streams.set(event.step_key, stream);
      }
      stream.text += data.text || "";
      stats.deltas += 1;
      paintStream(event.step_key);
    }

    function applyNow(event) {
      const key = event.step_key;
      if (RUN_STATUS[event.type]) {
        setStatus(document.getElementById("run-status"), RUN_STATUS[event.type], RUN_LABEL[RUN_STATUS[event.type]]);
        const header = document.getElementById("run-header");
        if (header) header.dataset.status = RUN_STATUS[event.type];
      }
      if (RUN_STOPS.has(event.type)) Array.from(streams.keys()).forEach(endStream);
      if (!key) return;
      const el = card(key);
      if (STEP_STATUS[event.type] && el) {
        el.dataset.status = STEP_STATUS[event.type];
        setStatus(el.querySelector(".step-head .step-status"), STEP_STATUS[event.type]);
      }
      if (event.type === "llm.finished") {
        // The final text replaces what streamed, until the fetched card shows it in its turn.
        const data = event.data || {};
        const stream = streams.get(key);
        if (stream && stream.turn === data.turn) streams.delete(key);
        if (!streams.has(key)) streamBoxes(key).forEach((box) => { box.textContent = data.text || ""; });
      }
      if (event.type === "step.started" || event.type === "step.retrying") streams.delete(key);
      if (STREAM_ENDS.has(event.type) && event.type !== "step.succeeded") endStream(key);
    }

    // Other scripts of the page (run_canvas.js) follow the same events, once each, in order.
    function announce(event) {
      document.dispatchEvent(new CustomEvent("run-event", { detail: event }));
    }
    document.addEventListener("run-panel-loaded", () => streams.forEach((_, key) => paintStream(key)));

    function apply(event) {
      if (event.seq === null || event.seq === undefined) {
        if (event.type === "llm.delta") applyDelta(event);
        announce(event);
        return;
      }
      if (event.seq <= lastSeq) return;
      if (event.seq !== lastSeq + 1) stats.gaps += 1;
      lastSeq = event.seq;
      stats.lastSeq = lastSeq;
      stats.applied += 1;
      applyNow(event);
      announce(event);
      if (event.step_key) {
        if (card(event.step_key)) dirtySteps.add(event.step_key);
        else dirtyTree = true; // a new loop iteration, or a step this page has not drawn
      }
    }

    function connect() {
      const socket = new WebSocket(wsBase + "/ws/runs/" + runId + "/?after=" + lastSeq);
      socket.onopen = () => {
        backoff = 500;
        root.dataset.live = "connected";
      };
      socket.onmessage = (message) => {
        const data = JSON.parse(message.data);
        if (data.type === "events") {
          data.events.forEach(apply);
          if (data.events.some((e) => e.seq !== null && e.seq !== undefined)) refresh();
        } else if (data.type === "caught_up") {
          root.dataset.live = "live";
          root.dataset.lastSeq = String(lastSeq);
        }
      };
      socket.onclose = () => {
        root.dataset.live = "reconnecting";
        setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 10000);
      };
    }

    connect();
  }

  const list = document.querySelector("[data-live-runs]");
  if (list) initList(list);
  const run = document.querySelector("[data-live-run]");
  if (run) initRun(run);
  tick();
  setInterval(tick, 1000);
})();
