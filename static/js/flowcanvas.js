// FlowCanvas: a pipeline spec (orchestrator/engine/spec.py) drawn as an SVG flow diagram.
// Shared by the pipeline builder and the live run page. Plain ES2020, no dependencies;
// text reaches the SVG only through textContent.
//
// API (kept backward compatible; add options, never change what these mean):
//
//   const canvas = FlowCanvas.create(containerElement, {
//     readOnly: true,                 // default true: no drop zones, no dragging
//     idOf: (step, path) => step.id,  // node id; the builder passes the path ("steps.0.body.1")
//     onSelect: (nodeId, step, path) => {},   // click, Enter or Space on a node
//     decorate: (nodeId, step, path) => ({    // optional, called on render() and refresh()
//       status: "running",            // adds class fc-status-<status> (pending, running,
//                                     //   succeeded, failed, waiting, skipped, cancelled)
//       badges: ["12s", "1.2k tok", "$0.01"],  // small pills under the node
//       counter: "2/3",               // shown on loop nodes (iteration), any node really
//       className: "extra classes", title: "tooltip text",
//     }),
//     onDrop: (payload, target) => {},  // edit mode: payload {kind} (palette) or {move: path};
//                                       // target {list: "steps.0.body", index: 1} or
//                                       // {list: "steps.2.join", index: 0, join: true}
//     onKeyMove: (nodeId, delta) => {}, // edit mode: Alt+ArrowUp/Down on a focused node
//     label: "Pipeline diagram",        // aria-label of the SVG
//   });
//   canvas.render(spec)        // lay out and draw (spec: {steps: [...]}); keeps zoom/pan
//   canvas.refresh()           // re-run decorate() on every node, no relayout
//   canvas.select(nodeId)      // highlight (null clears); does not call onSelect
//   canvas.mark(nodeId, cls, on)  // toggle a class on a node (e.g. "fc-error")
//   canvas.clearMarks(cls)
//   canvas.focusNode(nodeId)
//   canvas.nodeElement(nodeId) // the <g> of a node, or null
//   canvas.fit() / canvas.zoomBy(factor) / canvas.resetZoom()
//   canvas.startDrag(payload, pointerEvent, label)  // palette items start a drag with this
//   canvas.destroy()
//
// DOM contract (for styling and tests): nodes are <g class="fc-node fc-kind-<kind>"
// data-node-id data-path data-step-id tabindex=0 role=button>; drop zones are
// <g class="fc-zone" data-list data-index> (faint dots, emphasised while dragging); loop back edges have
// class fc-back-edge and their condition text fc-loop-label.
(() => {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const NODE_W = 184, NODE_H = 52, GAP_Y = 44, GAP_X = 28, PAD = 18, LANE = 22, LABEL_H = 20;
  const KIND_LABEL = { agent: "Agent", sequence: "Sequence", parallel: "Parallel", loop: "Loop", branch: "Branch", review: "Review gate" };

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const clip = (text, n) => { const s = String(text ?? ""); return s.length > n ? `${s.slice(0, n - 1)}…` : s; };

  function describeCondition(c) {
    if (!isObject(c)) return "?";
    if (c.ref !== undefined) return `${c.ref || "?"} ${String(c.op || "?").replace("_", " ")}${c.value !== undefined ? ` "${c.value}"` : ""}`;
    if (Array.isArray(c.all)) return `all(${c.all.map(describeCondition).join(", ")})`;
    if (Array.isArray(c.any)) return `any(${c.any.map(describeCondition).join(", ")})`;
    if (c.not !== undefined) return `not(${describeCondition(c.not)})`;
    return "?";
  }

  // ------------------------------------------------------------------ layout
  // Each block knows its size (w, h) and draws itself centred on cx from top y into `out`.

  function listBlock(items, listPath, ctx) {
    const blocks = (Array.isArray(items) ? items : []).map((step, i) => stepBlock(step, `${listPath}.${i}`, ctx));
    if (!blocks.length) {
      return { w: NODE_W, h: GAP_Y * 1.6, draw(cx, y, out) {
        out.edges.push({ d: `M${cx},${y} V${y + GAP_Y * 1.6}` });
        out.zones.push({ x: cx, y: y + GAP_Y * 0.8, list: listPath, index: 0 });
        out.texts.push({ x: cx + 16, y: y + GAP_Y * 0.8 + 4, text: "empty: drop a step", cls: "fc-empty", anchor: "start" });
      } };
    }
    const w = Math.max(...blocks.map((b) => b.w));
    const h = GAP_Y + blocks.reduce((sum, b) => sum + b.h + GAP_Y, 0);
    return { w, h, draw(cx, y, out) {
      let top = y;
      blocks.forEach((b, i) => {
        out.edges.push({ d: `M${cx},${top} V${top + GAP_Y}`, arrow: true });
        out.zones.push({ x: cx, y: top + GAP_Y / 2, list: listPath, index: i });
        top += GAP_Y;
        b.draw(cx, top, out);
        top += b.h;
      });
      out.edges.push({ d: `M${cx},${top} V${top + GAP_Y}` });
      out.zones.push({ x: cx, y: top + GAP_Y / 2, list: listPath, index: blocks.length });
    } };
  }

  function nodeShape(step, path, kind, out, cx, y) {
    out.nodes.push({ step, path, kind, x: cx - NODE_W / 2, y, w: NODE_W, h: NODE_H });
  }

  function stepBlock(step, path, ctx) {
    const kind = isObject(step) && KIND_LABEL[step.kind] ? step.kind : "unknown";
    if (kind === "sequence" || kind === "loop") {
      const key = kind === "loop" ? "body" : "steps";
      const inner = listBlock(step[key], `${path}.${key}`, ctx);
      const lanes = kind === "loop" ? 2 * LANE : 0;
      const w = Math.max(NODE_W, inner.w) + 2 * PAD + lanes;
      const h = NODE_H + inner.h + PAD + (kind === "loop" ? LABEL_H : 0);
      return { w, h, draw(cx, y, out) {
        out.frames.push({ x: cx - w / 2, y: y + NODE_H / 2, w, h: h - NODE_H / 2, kind, path });
        nodeShape(step, path, kind, out, cx, y);
        inner.draw(cx, y + NODE_H, out);
        const end = y + NODE_H + inner.h;
        if (kind === "loop") {
          const lx = cx - w / 2 + LANE / 2 + 4;
          const backY = end - GAP_Y / 2;
          out.edges.push({ d: `M${cx},${backY} H${lx} V${y + NODE_H / 2} H${cx - NODE_W / 2}`, arrow: true, cls: "fc-back-edge" });
          const until = `until ${describeCondition(step.until)} · max ${step.max_iterations ?? 3}×`;
          out.texts.push({ x: cx, y: end + LABEL_H - 4, text: clip(until, Math.floor(w / 7)), cls: "fc-loop-label", title: until });
          out.edges.push({ d: `M${cx},${end} V${y + h}` });
        } else {
          out.edges.push({ d: `M${cx},${end} V${y + h}` });
        }
      } };
    }
    if (kind === "parallel") {
      const branches = (Array.isArray(step.branches) ? step.branches : []).map((b, i) => stepBlock(b, `${path}.branches.${i}`, ctx));
      const join = isObject(step.join) ? stepBlock(step.join, `${path}.join`, ctx) : null;
      const addLane = ctx.readOnly ? 0 : GAP_X + 20;
      const content = branches.reduce((s, b) => s + b.w, 0) + GAP_X * Math.max(0, branches.length - 1) + addLane;
      const bh = branches.length ? Math.max(...branches.map((b) => b.h)) : 0;
      const joinH = join ? join.h : (ctx.readOnly ? 12 : 30);
      const w = Math.max(NODE_W, content, join ? join.w : 0) + 2 * PAD;
      const h = NODE_H + 14 + GAP_Y + bh + 24 + GAP_Y / 1.5 + joinH + PAD;
      return { w, h, draw(cx, y, out) {
        out.frames.push({ x: cx - w / 2, y: y + NODE_H / 2, w, h: h - NODE_H / 2, kind, path });
        nodeShape(step, path, kind, out, cx, y);
        const forkY = y + NODE_H + 14;
        const bTop = forkY + GAP_Y;
        const joinBarY = bTop + bh + 24;
        let left = cx - content / 2;
        const xs = branches.map((b) => { const x = left + b.w / 2; left += b.w + GAP_X; return x; });
        const addX = ctx.readOnly ? null : cx + content / 2 - 10;
        const barXs = [...xs, ...(addX !== null ? [addX] : [])];
        out.edges.push({ d: `M${cx},${y + NODE_H} V${forkY}` });
        if (barXs.length) {
          out.bars.push({ x1: Math.min(cx, ...barXs), x2: Math.max(cx, ...barXs), y: forkY });
          out.bars.push({ x1: Math.min(cx, ...xs, cx), x2: Math.max(cx, ...xs, cx), y: joinBarY });
        }
        branches.forEach((b, i) => {
          out.edges.push({ d: `M${xs[i]},${forkY} V${bTop}`, arrow: true });
          out.zones.push({ x: xs[i], y: forkY + GAP_Y / 2, list: `${path}.branches`, index: i });
          b.draw(xs[i], bTop, out);
          out.edges.push({ d: `M${xs[i]},${bTop + b.h} V${joinBarY}` });
        });
        if (addX !== null) {
          out.edges.push({ d: `M${addX},${forkY} V${bTop}`, cls: "fc-stub" });
          out.zones.push({ x: addX, y: forkY + GAP_Y / 2, list: `${path}.branches`, index: branches.length, hint: "new branch" });
        }
        const joinTop = joinBarY + GAP_Y / 1.5;
        out.edges.push({ d: `M${cx},${joinBarY} V${joinTop}`, arrow: Boolean(join) });
        if (join) {
          join.draw(cx, joinTop, out);
        } else if (!ctx.readOnly) {
          out.zones.push({ x: cx, y: joinTop + 10, list: `${path}.join`, index: 0, join: true, hint: "join agent" });
          out.texts.push({ x: cx + 16, y: joinTop + 14, text: "no join: drop an agent", cls: "fc-empty", anchor: "start" });
        }
        out.edges.push({ d: `M${cx},${joinTop + joinH} V${y + h}` });
      } };
    }
    if (kind === "branch") {
      const arms = ["then", "else"].map((key) => listBlock(step[key], `${path}.${key}`, ctx));
      const content = arms[0].w + GAP_X + arms[1].w;
      const ah = Math.max(arms[0].h, arms[1].h);
      const w = Math.max(NODE_W, content) + 2 * PAD;
      const h = NODE_H + LABEL_H + 16 + LABEL_H + ah + 16 + PAD;
      return { w, h, draw(cx, y, out) {
        out.frames.push({ x: cx - w / 2, y: y + NODE_H / 2, w, h: h - NODE_H / 2, kind, path });
        nodeShape(step, path, kind, out, cx, y);
        const cond = `if ${describeCondition(step.if)}`;
        out.texts.push({ x: cx, y: y + NODE_H + 15, text: clip(cond, Math.floor(w / 7)), cls: "fc-cond-label", title: cond });
        const splitY = y + NODE_H + LABEL_H + 16;
        const armTop = splitY + LABEL_H;
        const xs = [cx - content / 2 + arms[0].w / 2, cx + content / 2 - arms[1].w / 2];
        const mergeY = armTop + ah + 16;
        out.edges.push({ d: `M${cx},${y + NODE_H} V${splitY}` });
        out.bars.push({ x1: xs[0], x2: xs[1], y: splitY });
        out.bars.push({ x1: xs[0], x2: xs[1], y: mergeY });
        ["then", "else"].forEach((label, i) => {
          out.edges.push({ d: `M${xs[i]},${splitY} V${armTop}` });
          out.texts.push({ x: xs[i] + 6, y: splitY + 14, text: label, cls: "fc-arm-label", anchor: "start" });
          arms[i].draw(xs[i], armTop, out);
          out.edges.push({ d: `M${xs[i]},${armTop + arms[i].h} V${mergeY}` });
        });
        out.edges.push({ d: `M${cx},${mergeY} V${y + h}` });
      } };
    }
    return { w: NODE_W, h: NODE_H, draw(cx, y, out) { nodeShape(step, path, kind, out, cx, y); } };
  }

  function layout(spec, ctx) {
    const root = listBlock(isObject(spec) ? spec.steps : [], "steps", ctx);
    const out = { nodes: [], edges: [], zones: [], frames: [], texts: [], bars: [] };
    const w = root.w + 40;
    const cx = w / 2;
    out.terminals = [{ x: cx, y: 14, text: "start" }, { x: cx, y: 36 + root.h + 14, text: "end" }];
    root.draw(cx, 36, out);
    return { out, w, h: 36 + root.h + 40 };
  }

  // ------------------------------------------------------------------ drawing

  function shapeFor(kind, x, y, w, h) {
    if (kind === "review") {  // a gate: an octagon
      const c = 12;
      return svg("polygon", { class: "fc-shape", points: `${x + c},${y} ${x + w - c},${y} ${x + w},${y + c} ${x + w},${y + h - c} ${x + w - c},${y + h} ${x + c},${y + h} ${x},${y + h - c} ${x},${y + c}` });
    }
    if (kind === "branch") {  // a decision: a hexagon
      const c = 16;
      return svg("polygon", { class: "fc-shape", points: `${x + c},${y} ${x + w - c},${y} ${x + w},${y + h / 2} ${x + w - c},${y + h} ${x + c},${y + h} ${x},${y + h / 2}` });
    }
    return svg("rect", { class: "fc-shape", x, y, width: w, height: h, rx: kind === "agent" ? 8 : 14 });
  }

  function subtitle(step, kind) {
    if (!isObject(step)) return "";
    if (kind === "agent") return step.agent ? `agent: ${step.agent}` : "no agent yet";
    if (kind === "review") return step.instructions || "human review";
    if (kind === "parallel") return `${(step.branches || []).length} branch${(step.branches || []).length === 1 ? "" : "es"}${step.join ? " + join" : ""}`;
    if (kind === "loop") return `repeat ≤ ${step.max_iterations ?? 3}×`;
    if (kind === "sequence") return `${(step.steps || []).length} steps`;
    if (kind === "branch") return "if / else";
    return "unknown kind";
  }

  function create(container, options = {}) {
    const opts = { readOnly: true, idOf: (step) => (isObject(step) ? step.id : undefined), label: "Pipeline diagram", ...options };
    const readOnly = Boolean(opts.readOnly);
    const box = document.createElement("div");
    box.className = `fc-box${readOnly ? " fc-readonly" : ""}`;
    const root = svg("svg", { class: "fc-svg", role: "group", "aria-label": opts.label });
    const defs = svg("defs");
    const marker = svg("marker", { id: `fc-arrow-${Math.random().toString(36).slice(2, 8)}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "fc-arrowhead" }));
    defs.append(marker);
    const viewport = svg("g", { class: "fc-viewport" });
    root.append(defs, viewport);
    const controls = document.createElement("div");
    controls.className = "fc-controls";
    for (const [name, text, label, fn] of [["zoom-in", "+", "Zoom in", () => api.zoomBy(1.25)], ["zoom-out", "−", "Zoom out", () => api.zoomBy(0.8)], ["fit", "Fit", "Fit the diagram in the box", () => api.fit()], ["reset", "1:1", "1:1, actual size", () => api.resetZoom()]]) {
      const b = document.createElement("button");
      b.type = "button"; b.className = `fc-${name}`; b.textContent = text; b.title = label; b.setAttribute("aria-label", label);
      b.addEventListener("click", fn);
      controls.append(b);
    }
    box.append(root, controls);
    container.append(box);

    let view = { x: 20, y: 10, s: 1 };
    let size = { w: 0, h: 0 };
    let nodes = new Map(); // id -> {g, step, path}
    let selected = null;
    let firstRender = true;
    let drag = null;

    function applyView() { viewport.setAttribute("transform", `translate(${view.x},${view.y}) scale(${view.s})`); }

    function render(spec) {
      const { out, w, h } = layout(spec, { readOnly });
      size = { w, h };
      const marks = new Map([...nodes].map(([id, n]) => [id, [...n.g.classList].filter((c) => c.startsWith("fc-mark-") || c === "fc-error")]));
      nodes = new Map();
      const layers = ["frames", "edges", "nodes", "labels", "zones"].map((name) => svg("g", { class: `fc-layer-${name}` }));
      const [frames, edges, nodeLayer, labels, zones] = layers;
      for (const f of out.frames) frames.append(svg("rect", { class: `fc-frame fc-frame-${f.kind}`, x: f.x, y: f.y, width: f.w, height: f.h, rx: 10, "data-path": f.path }));
      for (const b of out.bars) edges.append(svg("line", { class: "fc-bar", x1: b.x1, x2: b.x2, y1: b.y, y2: b.y }));
      for (const e of out.edges) edges.append(svg("path", { class: `fc-edge ${e.cls || ""}`.trim(), d: e.d, "marker-end": e.arrow ? `url(#${marker.id})` : null }));
      for (const t of out.terminals) {
        const g = svg("g", { class: "fc-terminal" });
        g.append(svg("rect", { x: t.x - 26, y: t.y - 10, width: 52, height: 20, rx: 10 }), svg("text", { x: t.x, y: t.y + 4, "text-anchor": "middle" }, t.text));
        labels.append(g);
      }
      for (const t of out.texts) {
        const text = svg("text", { class: t.cls, x: t.x, y: t.y, "text-anchor": t.anchor || "middle" }, t.text);
        if (t.title) text.append(svg("title", {}, t.title));
        labels.append(text);
      }
      for (const n of out.nodes) {
        const id = String(opts.idOf(n.step, n.path) ?? n.path);
        const stepId = isObject(n.step) ? String(n.step.id ?? "") : "";
        // The accessible name is the node's visible text (kind, id, subtitle, badges).
        const g = svg("g", { class: `fc-node fc-kind-${n.kind}`, tabindex: 0, role: "button", "data-node-id": id, "data-path": n.path, "data-step-id": stepId });
        g.append(shapeFor(n.kind, n.x, n.y, n.w, n.h));
        g.append(svg("text", { class: "fc-kind", x: n.x + 12, y: n.y + 15 }, (KIND_LABEL[n.kind] || "?").toUpperCase()));
        g.append(svg("text", { class: "fc-id", x: n.x + 12, y: n.y + 31 }, clip(stepId || "(no id)", 22)));
        g.append(svg("text", { class: "fc-sub", x: n.x + 12, y: n.y + 45 }, clip((isObject(n.step) && n.step.title) || subtitle(n.step, n.kind), 28)));
        g.append(svg("g", { class: "fc-deco" }));
        g.fcBox = n;
        nodeLayer.append(g);
        nodes.set(id, { g, step: n.step, path: n.path });
        for (const c of marks.get(id) || []) g.classList.add(c);
        if (id === selected) g.classList.add("fc-selected");
      }
      if (!readOnly) {
        for (const z of out.zones) {
          const g = svg("g", { class: `fc-zone${z.join ? " fc-zone-join" : ""}`, "data-list": z.list, "data-index": z.index });
          if (z.join) g.setAttribute("data-join", "1");
          g.append(svg("circle", { cx: z.x, cy: z.y, r: 16, class: "fc-zone-hit" }), svg("circle", { cx: z.x, cy: z.y, r: 8, class: "fc-zone-dot" }),
            svg("text", { x: z.x, y: z.y + 4, "text-anchor": "middle", class: "fc-zone-plus" }, "+"));
          g.append(svg("title", {}, z.hint ? `Drop here: ${z.hint}` : "Drop here"));
          zones.append(g);
        }
      }
      viewport.replaceChildren(...layers);
      refresh();
      if (firstRender) { firstRender = false; requestAnimationFrame(() => api.fit()); } else applyView();
    }

    function refresh() {
      if (typeof opts.decorate !== "function") return;
      for (const [id, n] of nodes) {
        const deco = opts.decorate(id, n.step, n.path) || {};
        const g = n.g;
        for (const c of [...g.classList]) if (c.startsWith("fc-status-") || c.startsWith("fc-deco-")) g.classList.remove(c);
        if (deco.status) g.classList.add(`fc-status-${String(deco.status).replace(/[^a-z_-]/gi, "")}`);
        if (deco.className) for (const c of String(deco.className).split(/\s+/).filter(Boolean)) g.classList.add(`fc-deco-${c}`);
        const layer = g.querySelector(".fc-deco");
        layer.replaceChildren();
        const b = g.fcBox;
        let x = b.x;
        for (const badge of deco.badges || []) {
          const text = clip(badge, 14);
          const width = 8 + text.length * 6.2;
          layer.append(svg("rect", { class: "fc-badge", x, y: b.y + b.h + 3, width, height: 15, rx: 7 }), svg("text", { class: "fc-badge-text", x: x + 4, y: b.y + b.h + 14 }, text));
          x += width + 4;
        }
        if (deco.counter !== undefined && deco.counter !== null && deco.counter !== "") {
          const text = clip(deco.counter, 10);
          const width = 10 + text.length * 6.4;
          layer.append(svg("rect", { class: "fc-counter", x: b.x + b.w - width - 6, y: b.y + 5, width, height: 16, rx: 8 }), svg("text", { class: "fc-counter-text", x: b.x + b.w - width / 2 - 6, y: b.y + 17, "text-anchor": "middle" }, text));
        }
        let title = g.querySelector(":scope > title");
        if (deco.title) { if (!title) { title = svg("title"); g.prepend(title); } title.textContent = deco.title; } else if (title) title.remove();
      }
    }

    function nodeFromEvent(target) { const g = target && target.closest ? target.closest(".fc-node") : null; return g && root.contains(g) ? g : null; }

    function fireSelect(g) {
      const id = g.dataset.nodeId;
      api.select(id);
      const n = nodes.get(id);
      if (typeof opts.onSelect === "function") opts.onSelect(id, n && n.step, n && n.path);
    }

    // ---- drag and drop (pointer events; zones are hit-tested with elementFromPoint)
    function startDrag(payload, event, label) {
      if (readOnly) return;
      const ghost = document.createElement("div");
      ghost.className = "fc-ghost";
      ghost.textContent = label || "step";
      document.body.append(ghost);
      drag = { payload, ghost, zone: null, pointerId: event.pointerId };
      box.classList.add("fc-dragging");
      const source = payload && payload.move;
      root.querySelectorAll(".fc-zone").forEach((z) => {
        const list = z.dataset.list;
        const inside = source && (list === source || list.startsWith(`${source}.`));
        z.classList.toggle("fc-zone-off", Boolean(inside));
      });
      moveGhost(event);
      document.addEventListener("pointermove", onDragMove);
      document.addEventListener("pointerup", onDragEnd);
      document.addEventListener("pointercancel", onDragCancel);
      document.addEventListener("keydown", onDragKey);
    }

    // While a drag dwells near an edge of the box, the diagram scrolls under the pointer.
    function autoPan() {
      if (!drag || !drag.last) return;
      const r = root.getBoundingClientRect();
      const { clientX: x, clientY: y } = drag.last;
      const edge = 36;
      let dx = 0, dy = 0;
      if (x >= r.left && x <= r.right) { if (y < r.top + edge && y > r.top - edge) dy = 10; else if (y > r.bottom - edge && y < r.bottom + edge) dy = -10; }
      if (y >= r.top && y <= r.bottom) { if (x < r.left + edge && x > r.left - edge) dx = 10; else if (x > r.right - edge && x < r.right + edge) dx = -10; }
      if (!dx && !dy) drag.edgeSince = 0;
      else if (!drag.edgeSince) drag.edgeSince = performance.now();
      else if (performance.now() - drag.edgeSince > 400) { view.x += dx; view.y += dy; applyView(); } // a dwell, not a pass-by
      drag.timer = requestAnimationFrame(autoPan);
    }

    function moveGhost(event) {
      drag.last = { clientX: event.clientX, clientY: event.clientY };
      if (!drag.timer) drag.timer = requestAnimationFrame(autoPan);
      drag.ghost.style.left = `${event.clientX + 12}px`;
      drag.ghost.style.top = `${event.clientY + 8}px`;
      const hit = document.elementFromPoint(event.clientX, event.clientY);
      const zone = hit && hit.closest ? hit.closest(".fc-zone:not(.fc-zone-off)") : null;
      const inRoot = zone && root.contains(zone) ? zone : null;
      if (drag.zone !== inRoot) {
        if (drag.zone) drag.zone.classList.remove("fc-zone-active");
        if (inRoot) inRoot.classList.add("fc-zone-active");
        drag.zone = inRoot;
      }
    }

    function onDragMove(event) { if (drag) { event.preventDefault(); moveGhost(event); } }
    function endDrag() {
      if (!drag) return;
      if (drag.timer) cancelAnimationFrame(drag.timer);
      drag.ghost.remove();
      if (drag.zone) drag.zone.classList.remove("fc-zone-active");
      box.classList.remove("fc-dragging");
      document.removeEventListener("pointermove", onDragMove);
      document.removeEventListener("pointerup", onDragEnd);
      document.removeEventListener("pointercancel", onDragCancel);
      document.removeEventListener("keydown", onDragKey);
      drag = null;
    }
    function onDragEnd(event) {
      if (!drag) return;
      moveGhost(event);
      const zone = drag.zone;
      const payload = drag.payload;
      endDrag();
      if (zone && typeof opts.onDrop === "function") {
        opts.onDrop(payload, { list: zone.dataset.list, index: Number(zone.dataset.index), join: zone.dataset.join === "1" });
      }
    }
    function onDragCancel() { endDrag(); }
    function onDragKey(event) { if (event.key === "Escape") endDrag(); }

    // ---- pointer: click to select, drag a node to move it, drag the background to pan
    let press = null;
    root.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || drag) return;
      const g = nodeFromEvent(event.target);
      press = { x: event.clientX, y: event.clientY, g, view: { ...view }, moved: false };
      if (!g) { root.setPointerCapture(event.pointerId); root.classList.add("fc-panning"); }
    });
    root.addEventListener("pointermove", (event) => {
      if (!press || drag) return;
      const dx = event.clientX - press.x, dy = event.clientY - press.y;
      if (!press.moved && Math.hypot(dx, dy) < 5) return;
      press.moved = true;
      if (press.g && readOnly) press.g = null; // read-only: dragging from a node pans too
      if (press.g) {
        const g = press.g;
        press = null;
        startDrag({ move: g.dataset.path, nodeId: g.dataset.nodeId }, event, g.dataset.stepId || "step");
        return;
      }
      view.x = press.view.x + dx; view.y = press.view.y + dy; applyView();
    });
    root.addEventListener("pointerup", (event) => {
      const p = press;
      press = null;
      root.classList.remove("fc-panning");
      if (p && !p.moved && p.g) { fireSelect(p.g); p.g.focus({ preventScroll: true }); }
      else if (p && !p.moved && !p.g && !nodeFromEvent(event.target) && typeof opts.onSelect === "function") { api.select(null); opts.onSelect(null, null, null); }
    });
    root.addEventListener("wheel", (event) => {
      if (event.ctrlKey || event.metaKey) {
        event.preventDefault();
        const r = root.getBoundingClientRect();
        zoomAt(event.deltaY < 0 ? 1.1 : 1 / 1.1, event.clientX - r.left, event.clientY - r.top);
      } else {
        // Scroll the diagram while it has more to show in that direction; then the page scrolls.
        const r = root.getBoundingClientRect();
        const top = view.y, bottom = view.y + size.h * view.s;
        const room = event.deltaY > 0 ? bottom - (r.height - 10) : 10 - top;
        if (room > 0 || event.deltaX) {
          event.preventDefault();
          const dy = event.deltaY > 0 ? Math.min(event.deltaY, Math.max(room, 0)) : -Math.min(-event.deltaY, Math.max(room, 0));
          view.x -= event.deltaX; view.y -= dy; applyView();
        }
      }
    }, { passive: false });
    root.addEventListener("keydown", (event) => {
      const g = nodeFromEvent(event.target);
      if (!g) return;
      const ids = [...nodes.keys()];
      const at = ids.indexOf(g.dataset.nodeId);
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); fireSelect(g); }
      else if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown") && !readOnly && typeof opts.onKeyMove === "function") {
        event.preventDefault(); opts.onKeyMove(g.dataset.nodeId, event.key === "ArrowUp" ? -1 : 1);
      } else if (!event.altKey && !event.ctrlKey && (event.key === "ArrowDown" || event.key === "ArrowRight") && at < ids.length - 1) {
        event.preventDefault(); api.focusNode(ids[at + 1]);
      } else if (!event.altKey && !event.ctrlKey && (event.key === "ArrowUp" || event.key === "ArrowLeft") && at > 0) {
        event.preventDefault(); api.focusNode(ids[at - 1]);
      }
    });

    function zoomAt(factor, px, py) {
      const s = Math.min(3, Math.max(0.2, view.s * factor));
      const k = s / view.s;
      view = { x: px - (px - view.x) * k, y: py - (py - view.y) * k, s };
      applyView();
    }

    const api = {
      render,
      refresh,
      startDrag,
      select(id) {
        selected = id === null || id === undefined ? null : String(id);
        for (const [nid, n] of nodes) n.g.classList.toggle("fc-selected", nid === selected);
      },
      mark(id, cls, on = true) { const n = nodes.get(String(id)); if (n) n.g.classList.toggle(cls, Boolean(on)); },
      clearMarks(cls) { for (const n of nodes.values()) n.g.classList.remove(cls); },
      nodeElement(id) { const n = nodes.get(String(id)); return n ? n.g : null; },
      focusNode(id) {
        const n = nodes.get(String(id));
        if (!n) return;
        n.g.focus({ preventScroll: true });
        const r = root.getBoundingClientRect();
        const b = n.g.fcBox;
        const sx = view.x + (b.x + b.w / 2) * view.s, sy = view.y + (b.y + b.h / 2) * view.s;
        if (sx < 0 || sy < 0 || sx > r.width || sy > r.height) { view.x += r.width / 2 - sx; view.y += r.height / 2 - sy; applyView(); }
      },
      fit() {
        const r = root.getBoundingClientRect();
        if (!r.width || !r.height || !size.w) return;
        const s = Math.min(1, Math.max(0.5, Math.min((r.width - 20) / size.w, (r.height - 20) / size.h)));
        view = { s, x: (r.width - size.w * s) / 2, y: 10 };
        applyView();
      },
      zoomBy(factor) { const r = root.getBoundingClientRect(); zoomAt(factor, r.width / 2, r.height / 2); },
      resetZoom() { view = { ...view, s: 1 }; applyView(); },
      destroy() { endDrag(); box.remove(); nodes.clear(); },
      get element() { return box; },
    };
    applyView();
    return api;
  }

  window.FlowCanvas = { create, describeCondition, version: 1 };
})();
