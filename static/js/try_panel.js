// The agent page's "Try it" panel: each message starts a try run (POST, JSON back), then the
// run's live websocket (ws/runs/<id>/) streams its events: model text as it comes
// (llm.delta), tool calls, and the final reply or the reason it stopped. Everything shown is
// set with textContent: model and tool output are data, never markup.
(function () {
  const panel = document.getElementById("try-panel");
  if (!panel) return;
  const form = document.getElementById("try-form");
  const transcript = document.getElementById("try-transcript");
  const message = document.getElementById("try-message");
  const history = document.getElementById("try-history");
  const status = document.getElementById("try-status");
  const send = document.getElementById("try-send");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function line(kind, text) {
    const el = document.createElement("div");
    el.className = "turn " + kind;
    el.textContent = text;
    transcript.appendChild(el);
    transcript.scrollTop = transcript.scrollHeight;
    return el;
  }

  function runLink(url, id) {
    const a = document.createElement("a");
    a.href = url;
    a.textContent = "run #" + id;
    return a;
  }

  function follow(data, said) {
    const reply = line("agent", "");
    reply.dataset.runId = data.run_id;
    let streamed = "";
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + data.ws_path + "?after=0");
    const done = (text) => {
      status.textContent = "";
      status.appendChild(document.createTextNode(text + " — "));
      status.appendChild(runLink(data.run_url, data.run_id));
      send.disabled = false;
      socket.close();
    };
    socket.onmessage = (msg) => {
      const body = JSON.parse(msg.data);
      if (body.type !== "events") return;
      for (const event of body.events) {
        const d = event.data || {};
        if (event.type === "llm.delta" && typeof d.text === "string") {
          streamed += d.text;
          reply.textContent = streamed;
        } else if (event.type === "tool.started") {
          transcript.insertBefore(Object.assign(document.createElement("div"),
            { className: "turn tool", textContent: "→ " + d.name + " " + JSON.stringify(d.arguments || {}) }), reply);
        } else if (event.type === "tool.finished") {
          transcript.insertBefore(Object.assign(document.createElement("div"),
            { className: "turn tool", textContent: "← " + d.name + (d.is_error ? " (error)" : " ok") }), reply);
        } else if (event.type === "run.succeeded") {
          const text = d.output && typeof d.output.reply === "string" ? d.output.reply : streamed;
          reply.textContent = text;
          history.value = (history.value + "\n\nUser: " + said + "\n\nAssistant: " + text).slice(-60000);
          done("done");
        } else if (event.type === "run.failed") {
          reply.classList.add("error");
          reply.textContent = "The run failed: " + (d.error || "unknown error");
          done("failed");
        } else if (event.type === "run.waiting_review") {
          reply.textContent = streamed + " [paused: waiting for a reviewer]";
          done("waiting for review");
        } else if (event.type === "run.cancelled") {
          done("cancelled");
        }
      }
    };
    socket.onerror = () => done("live updates unavailable; open the run");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const said = message.value.trim();
    if (!said) return;
    send.disabled = true;
    status.textContent = "starting…";
    line("user", said);
    const body = new FormData(form);
    try {
      const response = await fetch(form.action, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRFToken": csrf },
      });
      const data = await response.json();
      if (!response.ok) {
        line("error", data.error || "could not start the run");
        status.textContent = "";
        send.disabled = false;
        return;
      }
      message.value = "";
      status.textContent = "running…";
      follow(data, said);
    } catch (err) {
      line("error", "could not start the run: " + err);
      send.disabled = false;
    }
  });
})();
