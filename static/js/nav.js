// Live nav counts: the team socket pushes {"type": "review_count", "count": N}.
(function () {
  const active = location.pathname.split("/")[1];
  document.querySelectorAll("nav.links a").forEach((a) => {
    if (a.dataset.nav === active) a.classList.add("active");
  });
  function connect(delay) {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/team/");
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.type === "review_count") {
        const badge = document.getElementById("review-count");
        if (badge) {
          badge.textContent = data.count;
          badge.classList.toggle("zero", data.count === 0);
        }
      }
      document.dispatchEvent(new CustomEvent("team-event", { detail: data }));
    };
    ws.onclose = () => setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  }
  connect(500);
})();
