// The visual pipeline builder.
//
// The spec document (the same JSON the server stores) lives in `spec`. The page shows it
// in views that stay in sync: a flow diagram (static/js/flowcanvas.js; node ids are step
// paths such as "steps.0.body.1"), the selected step's card in the side panel, an outline
// of every card, a JSON text view and a YAML text view. Edits anywhere rewrite the others;
// JSON text that parses replaces the document; YAML text is parsed by the server's validate
// endpoint, which answers with the document, its YAML form and check_spec's errors. Errors
// carry paths ("steps.0.branches.2.prompt") and mark the node and card that own the path.
//
// History: every change is committed as a JSON snapshot (typing in one field within 1.5 s
// is one entry), so undo/redo cover field edits, drags, pastes and text-view edits alike.
//
// Plain ES2020, no framework. User and model text only ever reaches the page through
// textContent / value, never innerHTML.
(() => {
  "use strict";

  const $ = (selector, root = document) => root.querySelector(selector);
  const config = JSON.parse($("#builder-config").textContent);
  const CAN_EDIT = Boolean(config.canEdit);

  const KINDS = ["agent", "sequence", "parallel", "loop", "branch", "review"];
  const KIND_LABEL = { agent: "Agent", sequence: "Sequence", parallel: "Parallel", loop: "Loop", branch: "Branch", review: "Review" };
  const KIND_HELP = {
    agent: "One agent answers a prompt, using its tools",
    sequence: "Steps one after another (a group)",
    parallel: "Branches at the same time, then an optional join agent",
    loop: "Repeat a body until a condition holds",
    branch: "If / else on an earlier output",
    review: "A human gate: the run pauses in the review queue",
  };
  const CHILD_LISTS = {
    sequence: [["steps", "Steps"]],
    parallel: [["branches", "Branches — run at the same time"]],
    loop: [["body", "Body — repeated until the condition holds"]],
    branch: [["then", "Then"], ["else", "Else"]],
  };
  const OPS = ["contains", "not_contains", "equals", "not_equals", "matches", "not_matches", "truthy", "falsy"];
  const INPUT_TYPES = ["string", "number", "integer", "boolean", "object", "array"];
  const PIPELINE_FIELDS = ["name", "note", "description", "inputs", "outputs", "limits", "steps"];
  const NAME_RE = /^[A-Za-z0-9_]+$/;
  // The step fields the diagram shows (flowcanvas.js: id, title, subtitle, loop and branch
  // conditions); typing in any other field leaves the diagram as it is.
  const CANVAS_FIELDS = new Set(["id", "kind", "title", "agent", "instructions", "max_iterations", "until", "if"]);
  const MAX_CHIPS = 12; // reference chips per field; the rest through the #ref-options picker

  let spec = asDocument(JSON.parse($("#builder-spec").textContent));
  let dirty = false;
  let insertAfter = null; // path of the card showing an "insert below" bar
  let lastYaml = null;
  let validateTimer = null;
  let yamlTimer = null;
  let yamlPending = null;  // YAML typed but not yet read into the spec (a save reads it first)
  let validateSeq = 0;
  let committed = JSON.stringify(spec); // the document as of the last history entry
  let lastEditKey = null;
  let lastEditAt = 0;
  const undoStack = [];
  const redoStack = [];
  let selectedPath = null;
  let clipboard = null;
  let clipboardCut = false; // a cut step keeps its ids when pasted (a move), a copy gets new ones
  let canvas = null;
  let errorPaths = new Map(); // step path -> messages, from the last validation

  // ------------------------------------------------------------------ small helpers

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    let value;
    for (const [key, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (key === "class") node.className = v;
      else if (key === "text") node.textContent = v;
      else if (key === "dataset") Object.assign(node.dataset, v);
      else if (key === "value") value = v;
      else if (key === "checked") node.checked = true;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), v);
      else node.setAttribute(key, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    if (value !== undefined) node.value = String(value);
    return node;
  }

  // Node.append() would print `false` for a control left out (`CAN_EDIT && el(...)`).
  function appendAll(node, ...children) {
    node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
    return node;
  }

  function asDocument(value) {
    return value && typeof value === "object" && !Array.isArray(value) ? value : { steps: [] };
  }

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function splitPath(path) {
    return path === "" ? [] : path.split(".").map((part) => (/^\d+$/.test(part) ? Number(part) : part));
  }

  function getAt(path) {
    let node = spec;
    for (const key of splitPath(path)) {
      if (node === null || typeof node !== "object") return undefined;
      node = node[key];
    }
    return node;
  }

  function ensureList(listPath) {
    const parts = splitPath(listPath);
    const key = parts.pop();
    const parent = parts.length ? getAt(parts.join(".")) : spec;
    if (!Array.isArray(parent[key])) parent[key] = [];
    return parent[key];
  }

  function setIn(obj, dotted, value) {
    const keys = dotted.split(".");
    const last = keys.pop();
    let node = obj;
    for (const key of keys) {
      if (!isObject(node[key])) node[key] = {};
      node = node[key];
    }
    if (value === undefined) {
      delete node[last];
      // Drop emptied containers such as `retry: {}`.
      if (keys.length && Object.keys(node).length === 0) setIn(obj, keys.join("."), undefined);
    } else {
      node[last] = value;
    }
  }

  function getIn(obj, dotted) {
    return dotted.split(".").reduce((node, key) => (isObject(node) ? node[key] : undefined), obj);
  }

  function walkSteps(list, out = []) {
    for (const step of Array.isArray(list) ? list : []) {
      if (!isObject(step)) continue;
      out.push(step);
      for (const key of ["steps", "branches", "body", "then", "else"]) {
        if (Array.isArray(step[key])) walkSteps(step[key], out);
      }
      if (isObject(step.join)) out.push(step.join);
    }
    return out;
  }

  function uniqueId(base) {
    const taken = new Set(walkSteps(spec.steps).map((s) => s.id));
    let n = 1;
    while (taken.has(`${base}_${n}`)) n += 1;
    return `${base}_${n}`;
  }

  // With `forPath`, only steps that run before it (or share a loop body with it): a chip
  // for a later step would only produce a "runs after this one" error.
  function availableRefs(forPath = null) {
    const inputs = isObject(spec.inputs) ? Object.keys(spec.inputs).filter((n) => NAME_RE.test(n)) : [];
    let steps = walkSteps(spec.steps);
    if (forPath) {
      const order = stepPaths();
      const at = order.findIndex(([p]) => p === forPath);
      const loops = order.filter(([p, s]) => s.kind === "loop" && forPath.startsWith(`${p}.body.`)).map(([p]) => `${p}.body.`);
      if (at >= 0) steps = order.filter(([p], i) => (i < at && !forPath.startsWith(`${p}.`)) || loops.some((l) => p.startsWith(l))).map(([, s]) => s);
    }
    const ids = steps.map((s) => s.id).filter((id) => typeof id === "string" && /^[A-Za-z]\w*$/.test(id));
    return [...inputs.map((n) => `input.${n}`), ...[...new Set(ids)].map((id) => `steps.${id}.output`)];
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    return { response, data };
  }

  function friendly(message) {
    if (/^List should have at least 1 item/.test(message)) return "add at least one step";
    if (message === "String should have at least 1 character") return "required";
    if (message === "Field required") return "required";
    if (message.startsWith("ref '' must")) return "choose what to test: input.<name> or steps.<id>.output";
    return message;
  }

  // ------------------------------------------------------------------ changes

  // Kept for the call sites that mark "a change starts here"; commit() after the change
  // is what records history.
  function snapshot() {}

  function commit(key = null) {
    const now = JSON.stringify(spec);
    if (now === committed) return;
    const at = Date.now();
    if (!(key !== null && key === lastEditKey && at - lastEditAt < 1500)) {
      undoStack.push(committed);
      if (undoStack.length > 200) undoStack.shift();
    }
    redoStack.length = 0;
    committed = now;
    lastEditKey = key;
    lastEditAt = at;
  }

  function travel(from, to) {
    if (!from.length) return;
    to.push(committed);
    committed = from.pop();
    spec = asDocument(JSON.parse(committed));
    lastEditKey = null;
    insertAfter = null;
    dropYamlEdit(); // undo is the way out of a YAML edit that does not parse
    if (selectedPath && !isObject(getAt(selectedPath))) selectedPath = null;
    renderSettings();
    afterChange({ structure: true });
  }

  function undo() { travel(undoStack, redoStack); }
  function redo() { travel(redoStack, undoStack); }

  function changed(options = {}) {
    const active = document.activeElement;
    const typing = active && ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName);
    commit(options.structure || !typing ? null : active);
    afterChange(options);
  }

  // Only what an edit can change is drawn again: rebuilding a 400-step outline and diagram
  // on every keystroke blocked the page for seconds. `pipeline`: the pipeline's own fields
  // (description, inputs, outputs, limits), shown in no card and not on the diagram.
  // `step` + `field`: one field of one step: that step's other card (outline or side
  // panel) and, if the diagram shows the field, the diagram. Otherwise everything.
  function afterChange({ structure = false, refs = false, pipeline = false, step = null, field = null } = {}) {
    dirty = true;
    if (structure || (!pipeline && !step)) {
      const active = document.activeElement;
      const inInspector = active && $("#inspector-body").contains(active);
      const inOutline = active && $("#step-tree").contains(active);
      if (structure || !inOutline) renderTree();
      if (structure || !inInspector) renderInspector();
      renderCanvas();
    } else if (step) {
      redrawStep(step, field);
    }
    if (structure || refs) refreshRefs();
    refreshJson();
    scheduleValidate();
    updateHistoryButtons();
  }

  function redrawStep(step, field) {
    const path = pathOf(step);
    if (path === null) return;
    const active = document.activeElement;
    const outlineCard = cardAt(path);
    if (outlineCard && !outlineCard.contains(active)) {
      // The card's nested steps did not change: they move over instead of being rebuilt.
      const card = renderCard(path, step, positionOf(path), { children: outlineCard });
      outlineCard.replaceWith(card);
      lockIfReadOnly(card);
    }
    if (path === selectedPath && !$("#inspector-body").contains(active)) renderInspector();
    if (CANVAS_FIELDS.has(String(field).split(".")[0])) renderCanvas();
  }

  function updateHistoryButtons() {
    const undoButton = $("#undo");
    if (undoButton) undoButton.disabled = undoStack.length === 0;
    const redoButton = $("#redo");
    if (redoButton) redoButton.disabled = redoStack.length === 0;
  }

  function addStep(listPath, index, kind) {
    snapshot();
    ensureList(listPath).splice(index, 0, newStep(kind));
    insertAfter = null;
    changed({ structure: true });
    const card = cardAt(`${listPath}.${index}`);
    if (card) {
      card.scrollIntoView({ block: "nearest" });
      const idInput = card.querySelector(".field-id input");
      if (idInput) idInput.focus();
    }
  }

  function newStep(kind) {
    const id = uniqueId(kind);
    switch (kind) {
      case "agent": return { kind, id, agent: "", prompt: "" };
      case "sequence": return { kind, id, steps: [] };
      case "parallel": return { kind, id, branches: [] };
      case "loop": return { kind, id, max_iterations: 3, until: { ref: "", op: "contains", value: "" }, body: [] };
      case "branch": return { kind, id, if: { ref: "", op: "truthy" }, then: [], else: [] };
      default: return { kind: "review", id, instructions: "" };
    }
  }

  function newJoin(parallel) {
    const branchIds = (parallel.branches || []).filter(isObject).map((b) => b.id).filter(Boolean);
    const prompt = branchIds.length
      ? `Consolidate these results:\n\n${branchIds.map((id) => `${id}: {{ steps.${id}.output }}`).join("\n")}`
      : "";
    return { kind: "agent", id: uniqueId("join"), agent: "", prompt };
  }

  function moveStep(listPath, index, delta) {
    const list = ensureList(listPath);
    const target = index + delta;
    if (target < 0 || target >= list.length) return;
    snapshot();
    [list[index], list[target]] = [list[target], list[index]];
    insertAfter = null;
    if (selectedPath === `${listPath}.${index}`) selectedPath = `${listPath}.${target}`;
    changed({ structure: true });
    const inInspector = $("#inspector-body").contains(document.activeElement);
    const card = inInspector ? null : cardAt(`${listPath}.${target}`);
    if (card) {
      card.scrollIntoView({ block: "nearest" });
      const button = card.querySelector(delta < 0 ? ".move-up" : ".move-down");
      if (button && !button.disabled) button.focus();
    } else if (inInspector || canvas) {
      const button = $(`#inspector-body ${delta < 0 ? ".move-up" : ".move-down"}`);
      if (inInspector && button && !button.disabled) button.focus();
    }
  }

  function deleteStep(path) {
    const step = getAt(path);
    const inside = isObject(step) ? walkSteps([step]).length - 1 : 0;
    const name = isObject(step) && step.id ? `“${step.id}”` : "this step";
    const question = inside ? `Delete step ${name} and the ${inside} step${inside === 1 ? "" : "s"} inside it?` : `Delete step ${name}?`;
    if (!window.confirm(`${question} (Undo brings it back.)`)) return false;
    const parts = splitPath(path);
    const key = parts.pop();
    const parent = parts.length ? getAt(parts.join(".")) : spec;
    if (Array.isArray(parent)) parent.splice(key, 1);
    else delete parent[key];
    insertAfter = null;
    if (selectedPath && (selectedPath === path || selectedPath.startsWith(`${path}.`))) selectedPath = null;
    else if (selectedPath && !isObject(getAt(selectedPath))) selectedPath = null;
    changed({ structure: true });
    return true;
  }

  // ------------------------------------------------------------------ canvas editing

  function stepPaths(list = spec.steps, listPath = "steps", out = []) {
    (Array.isArray(list) ? list : []).forEach((step, i) => {
      const path = `${listPath}.${i}`;
      if (!isObject(step)) return;
      out.push([path, step]);
      for (const key of ["steps", "branches", "body", "then", "else"]) if (Array.isArray(step[key])) stepPaths(step[key], `${path}.${key}`, out);
      if (isObject(step.join)) out.push([`${path}.join`, step.join]);
    });
    return out;
  }

  function pathOf(step) {
    const found = stepPaths().find(([, s]) => s === step);
    return found ? found[0] : null;
  }

  // Where a step path lives: its parent array (or the parallel owning a join) and key.
  function slotOf(path) {
    const parts = splitPath(path);
    const key = parts.pop();
    return { parent: parts.length ? getAt(parts.join(".")) : spec, key };
  }

  function onDrop(payload, target) {
    const joinOwner = target.join ? getAt(target.list.replace(/\.join$/, "")) : null;
    const list = target.join ? null : ensureList(target.list);
    let step;
    if (payload.kind) {
      step = newStep(payload.kind);
    } else if (payload.move) {
      step = getAt(payload.move);
      if (!isObject(step) || target.list === payload.move || target.list.startsWith(`${payload.move}.`)) return;
    } else {
      return;
    }
    if (target.join && (!isObject(joinOwner) || step.kind !== "agent")) {
      flash("A join is an agent step: drop an agent there.");
      return;
    }
    let index = target.index;
    if (payload.move) {
      const { parent, key } = slotOf(payload.move);
      if (Array.isArray(parent)) {
        if (parent === list && key < index) index -= 1;
        parent.splice(key, 1);
      } else if (isObject(parent)) {
        delete parent[key];
      }
    }
    if (target.join) joinOwner.join = step;
    else list.splice(index, 0, step);
    insertAfter = null;
    selectedPath = pathOf(step);
    changed({ structure: true });
    if (canvas && selectedPath) canvas.focusNode(selectedPath);
  }

  function flash(text) {
    const status = $("#canvas-status");
    if (status) status.textContent = text;
  }

  function refPattern(id) {
    return new RegExp(`(\\bsteps\\.)${id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(?=\\.(?:output|error|status)\\b)`, "g");
  }

  // Rewrites every reference to step `from` (templates, conditions, outputs) to step `to`.
  function rewriteRefs(node, from, to) {
    const pattern = refPattern(from);
    let count = 0;
    const visit = (value) => {
      if (Array.isArray(value)) { value.forEach((v, i) => { if (typeof v === "string") { const r = v.replace(pattern, `$1${to}`); if (r !== v) { value[i] = r; count += 1; } } else visit(v); }); return; }
      if (!isObject(value)) return;
      for (const [k, v] of Object.entries(value)) {
        if (typeof v === "string") {
          if (k === "id" || k === "kind" || k === "agent") continue;
          const r = v.replace(pattern, `$1${to}`);
          if (r !== v) { value[k] = r; count += 1; }
        } else {
          visit(v);
        }
      }
    };
    visit(node);
    return count;
  }

  function renameStep(from, to) {
    if (!from || !to || from === to || !/^[A-Za-z][A-Za-z0-9_]*$/.test(to) || !/^[A-Za-z]\w*$/.test(from)) return;
    if (walkSteps(spec.steps).filter((s) => s.id === from).length) return; // another step still has the old id
    const count = rewriteRefs(spec, from, to);
    if (count) {
      flash(`Renamed ${from} → ${to}: ${count} reference${count === 1 ? "" : "s"} updated.`);
      changed({ structure: true });
    }
  }

  function copySelected() {
    const step = selectedPath && getAt(selectedPath);
    if (!isObject(step)) return false;
    clipboard = JSON.stringify(step);
    clipboardCut = false;
    flash(`Copied ${step.id || "the step"}. Ctrl+V pastes it after the selected step, Ctrl+Shift+V inside it.`);
    return true;
  }

  // Ctrl+X: the keyboard's way to move a step anywhere (cut, select, Ctrl+V or Ctrl+Shift+V).
  function cutSelected() {
    const step = selectedPath && getAt(selectedPath);
    if (!isObject(step)) return false;
    clipboard = JSON.stringify(step);
    clipboardCut = true;
    const { parent, key } = slotOf(selectedPath);
    if (Array.isArray(parent)) parent.splice(key, 1); else delete parent[key];
    const where = selectedPath;
    selectedPath = null;
    flash(`Cut ${step.id || "the step"}: select a step and press Ctrl+V to paste it after, Ctrl+Shift+V to paste it inside.`);
    changed({ structure: true });
    focusNear(where);
    return true;
  }

  // Keyboard focus after a node went away: the node now at its place, the one before, its parent.
  function focusNear(path) {
    if (!canvas || !path) return;
    const parts = splitPath(path);
    const last = parts[parts.length - 1];
    const candidates = [path];
    if (typeof last === "number" && last > 0) candidates.push([...parts.slice(0, -1), last - 1].join("."));
    for (let n = parts.length - 2; n > 0; n -= 1) candidates.push(parts.slice(0, n).join("."));
    candidates.push("steps.0");
    const found = candidates.find((p) => canvas.nodeElement(p));
    if (found) canvas.focusNode(found);
  }

  // The list a step pasted "inside" the selected container goes to, and where.
  function insideSlot(step) {
    const key = { loop: "body", sequence: "steps", parallel: "branches", branch: "then" }[step.kind];
    return key ? { list: (Array.isArray(step[key]) ? step[key] : (step[key] = [])), index: 0 } : null;
  }

  function pasteStep({ inside = false } = {}) {
    if (!clipboard) return false;
    const copy = JSON.parse(clipboard);
    const keepIds = clipboardCut && !walkSteps([copy]).some((s) => walkSteps(spec.steps).some((t) => t.id === s.id));
    clipboardCut = false;
    // Fresh ids for a copy and everything in it; references inside the copy follow.
    const renames = [];
    for (const inner of keepIds ? [] : walkSteps([copy])) {
      const old = inner.id;
      inner.id = uniqueId(/^[A-Za-z]\w*?(?:_\d+)?$/.test(String(old)) ? String(old).replace(/_\d+$/, "") : inner.kind || "step");
      while (walkSteps([copy]).filter((s) => s.id === inner.id).length > 1) inner.id = `${inner.id}_c`;
      renames.push([old, inner.id]);
    }
    for (const [from, to] of renames) if (typeof from === "string" && /^[A-Za-z]\w*$/.test(from)) rewriteRefs(copy, from, to);
    let list = spec.steps;
    let index = Array.isArray(list) ? list.length : 0;
    if (selectedPath && isObject(getAt(selectedPath))) {
      let path = selectedPath;
      if (path.endsWith(".join")) path = path.slice(0, -".join".length);
      const slot = inside ? insideSlot(getAt(path)) : null;
      const { parent, key } = slotOf(path);
      if (slot) { list = slot.list; index = slot.index; }
      else if (Array.isArray(parent)) { list = parent; index = key + 1; }
    }
    if (!Array.isArray(spec.steps)) spec.steps = [];
    if (!Array.isArray(list)) list = spec.steps;
    list.splice(index, 0, copy);
    selectedPath = pathOf(copy);
    changed({ structure: true });
    if (canvas && selectedPath) canvas.focusNode(selectedPath);
    return true;
  }

  function selectStep(path, { focusCanvas = false } = {}) {
    selectedPath = path && isObject(getAt(path)) ? path : null;
    if (canvas) canvas.select(selectedPath);
    renderInspector();
    if (focusCanvas && canvas && selectedPath) canvas.focusNode(selectedPath);
  }

  function renderCanvas() {
    if (!canvas) return;
    canvas.render(spec);
    canvas.select(selectedPath);
    canvas.clearMarks("fc-error");
    for (const path of errorPaths.keys()) canvas.mark(path, "fc-error", true);
  }

  function positionOf(path) {
    if (path.endsWith(".join")) return { join: true };
    const { parent, key } = slotOf(path);
    const listPath = splitPath(path).slice(0, -1).join(".");
    return { listPath, index: key, count: Array.isArray(parent) ? parent.length : 1 };
  }

  function renderInspector() {
    const body = $("#inspector-body");
    if (!body) return;
    const step = selectedPath ? getAt(selectedPath) : null;
    if (!isObject(step)) {
      body.replaceChildren(el("p", { class: "hint", id: "inspector-empty",
        text: CAN_EDIT ? "Select a step on the canvas to edit it here, or drag one in from the palette." : "Select a step on the canvas to see its settings." }));
      return;
    }
    const card = renderCard(selectedPath, step, positionOf(selectedPath), { inspector: true });
    body.replaceChildren(card);
    for (const message of errorPaths.get(selectedPath) || []) card.querySelector(":scope > .card-errors").append(el("li", { text: message }));
    if (errorPaths.has(selectedPath)) card.classList.add("has-errors");
    lockIfReadOnly(body);
  }

  function cardAt(path) {
    return [...document.querySelectorAll(".step-card")].find((card) => card.dataset.path === path) || null;
  }

  // ------------------------------------------------------------------ pipeline settings

  function renderSettings() {
    const body = $("#pipeline-settings-body");
    body.replaceChildren(
      el("label", {}, "Description",
        el("textarea", {
          rows: 2, class: "pipeline-description", value: spec.description || "", placeholder: "What this pipeline does",
          oninput: (e) => { setIn(spec, "description", e.target.value || undefined); changed({ pipeline: true }); },
        })),
      el("ul", { class: "field-errors", dataset: { for: "description" } }),
      inputsSection(),
      outputsSection(),
      limitsSection(),
    );
    lockIfReadOnly(body);
  }

  function inputsSection() {
    const rows = el("div", { class: "kv-rows", id: "input-rows" });
    for (const [name, def] of Object.entries(isObject(spec.inputs) ? spec.inputs : {})) rows.append(inputRow(name, def));
    const add = CAN_EDIT && el("button", {
      type: "button", class: "add-input", text: "+ Input",
      onclick: () => { rows.append(inputRow("", {})); lockIfReadOnly(rows); rows.lastChild.querySelector(".input-name").focus(); },
    });
    return el("fieldset", { class: "pipeline-inputs" },
      el("legend", { text: "Inputs" }),
      el("p", { class: "hint", text: "What a run starts with. Prompts use {{ input.<name> }}." }),
      rows, add, el("ul", { class: "field-errors", dataset: { for: "inputs" } }));
  }

  function inputRow(name, def) {
    const definition = isObject(def) ? def : {};
    const row = el("div", { class: "kv-row input-row" });
    row.extra = { ...definition }; // keeps what the form has no field for (default, ...)
    appendAll(row,
      el("input", { class: "input-name", placeholder: "name", value: name, "aria-label": "Input name", oninput: syncInputs }),
      el("select", { class: "input-type", "aria-label": "Input type", value: definition.type || "string", onchange: syncInputs },
        INPUT_TYPES.map((t) => el("option", { value: t, text: t }))),
      el("label", { class: "check" },
        el("input", { type: "checkbox", class: "input-required", checked: definition.required !== false, onchange: syncInputs }),
        "required"),
      el("input", { class: "input-description", placeholder: "description", value: definition.description || "", "aria-label": "Input description", oninput: syncInputs }),
      CAN_EDIT && el("button", { type: "button", class: "icon remove", title: "Remove input", "aria-label": "Remove input", text: "✕", onclick: () => { row.remove(); syncInputs(); } }),
    );
    return row;
  }

  // Rows become an object keyed by name (no prototype: `__proto__` is a name like another).
  // A duplicate keeps its first row here, and markRowProblems() blocks the save.
  function syncInputs() {
    const inputs = Object.create(null);
    for (const row of document.querySelectorAll("#input-rows .input-row")) {
      const name = row.querySelector(".input-name").value.trim();
      if (!name || name in inputs) continue;
      const def = { ...row.extra, type: row.querySelector(".input-type").value };
      const description = row.querySelector(".input-description").value;
      if (description) def.description = description; else delete def.description;
      if (row.querySelector(".input-required").checked) delete def.required; else def.required = false;
      inputs[name] = def;
    }
    spec.inputs = inputs;
    markRowProblems();
    changed({ refs: true, pipeline: true });
  }

  function outputsSection() {
    const rows = el("div", { class: "kv-rows", id: "output-rows" });
    for (const [name, ref] of Object.entries(isObject(spec.outputs) ? spec.outputs : {})) rows.append(outputRow(name, ref));
    const add = CAN_EDIT && el("button", {
      type: "button", class: "add-output", text: "+ Output",
      onclick: () => { rows.append(outputRow("", "")); lockIfReadOnly(rows); rows.lastChild.querySelector(".output-name").focus(); },
    });
    return el("fieldset", { class: "pipeline-outputs" },
      el("legend", { text: "Outputs" }),
      el("p", { class: "hint", text: "Named run results, each a reference such as steps.summary.output." }),
      rows, add, el("ul", { class: "field-errors", dataset: { for: "outputs" } }));
  }

  function outputRow(name, ref) {
    const row = el("div", { class: "kv-row output-row" });
    appendAll(row,
      el("input", { class: "output-name", placeholder: "name", value: name, "aria-label": "Output name", oninput: syncOutputs }),
      el("span", { class: "arrow", text: "←" }),
      el("input", { class: "output-ref", placeholder: "steps.<id>.output", list: "ref-options", value: typeof ref === "string" ? ref : "", "aria-label": "Output reference", oninput: syncOutputs }),
      CAN_EDIT && el("button", { type: "button", class: "icon remove", title: "Remove output", "aria-label": "Remove output", text: "✕", onclick: () => { row.remove(); syncOutputs(); } }),
    );
    return row;
  }

  function syncOutputs() {
    const outputs = Object.create(null);
    for (const row of document.querySelectorAll("#output-rows .output-row")) {
      const name = row.querySelector(".output-name").value.trim();
      if (name && !(name in outputs)) outputs[name] = row.querySelector(".output-ref").value.trim();
    }
    spec.outputs = outputs;
    markRowProblems();
    changed({ pipeline: true });
  }

  // What the Inputs and Outputs rows cannot be saved as: two rows with one name (one would
  // be dropped: the spec keys them by name), an input name templates cannot reach
  // ({{ input.<name> }}: letters, digits and _), a row with content but no name. Each one
  // blocks the save (see save()). Output names are the server's to judge.
  function rowProblems() {
    const problems = [];
    const sections = [
      ["inputs", "input", "#input-rows .input-row", ".input-name", NAME_RE, (row) => row.querySelector(".input-description").value.trim()],
      ["outputs", "output", "#output-rows .output-row", ".output-name", null, (row) => row.querySelector(".output-ref").value.trim()],
    ];
    for (const [section, noun, rowSelector, nameSelector, pattern, content] of sections) {
      const byName = new Map();
      for (const row of document.querySelectorAll(rowSelector)) {
        const input = row.querySelector(nameSelector);
        const name = input.value.trim();
        if (!name) {
          if (content(row)) problems.push({ section, inputs: [input], message: `an ${noun} with no name` });
        } else if (pattern && !pattern.test(name)) {
          problems.push({ section, inputs: [input], message: `${noun} name “${name}”: use letters, digits and _ only` });
        } else {
          byName.set(name, [...(byName.get(name) || []), input]);
        }
      }
      for (const [name, inputs] of byName) {
        if (inputs.length > 1) problems.push({ section, inputs, message: `${inputs.length} ${section} are named “${name}”: rename or remove one` });
      }
    }
    return problems;
  }

  function markRowProblems() {
    document.querySelectorAll(".row-problem").forEach((node) => node.remove());
    document.querySelectorAll(".input-name.invalid, .output-name.invalid").forEach((node) => node.classList.remove("invalid"));
    const problems = rowProblems();
    for (const { section, inputs, message } of problems) {
      for (const input of inputs) input.classList.add("invalid");
      fieldErrors(section).append(el("li", { class: "row-problem", text: message }));
      $("#problem-list").append(el("li", { class: "row-problem" }, el("button", {
        type: "button", class: "problem link-like", text: `${section}: ${message}`,
        onclick: () => { inputs[0].scrollIntoView({ block: "center" }); inputs[0].focus(); },
      })));
    }
    return problems;
  }

  function limitsSection() {
    const limits = isObject(spec.limits) ? spec.limits : {};
    const number = (key, label, step, hint) => el("label", { class: `limit-${key}` }, label,
      el("input", {
        type: "number", min: 0, step, value: limits[key] ?? "", placeholder: hint, "aria-label": label,
        oninput: (e) => { setIn(spec, `limits.${key}`, e.target.value === "" ? undefined : Number(e.target.value)); changed({ pipeline: true }); },
      }));
    return el("fieldset", { class: "pipeline-limits" },
      el("legend", { text: "Run limits" }),
      el("p", { class: "hint", text: "Reaching a limit pauses the run for review." }),
      el("div", { class: "inline-fields" },
        number("max_tokens", "Max tokens", 1, "no limit"),
        number("max_cost_usd", "Max cost (USD)", 0.01, "no limit")),
      el("ul", { class: "field-errors", dataset: { for: "limits" } }));
  }

  // ------------------------------------------------------------------ the step tree

  function renderTree() {
    const tree = $("#step-tree");
    tree.replaceChildren(renderList("steps", Array.isArray(spec.steps) ? spec.steps : []));
    lockIfReadOnly(tree);
  }

  function renderList(listPath, items) {
    const list = el("div", { class: "step-list", dataset: { list: listPath } });
    items.forEach((step, index) => {
      const path = `${listPath}.${index}`;
      list.append(renderCard(path, step, { listPath, index, count: items.length }));
      if (CAN_EDIT && insertAfter === path) list.append(addBar(listPath, index + 1, "insert-bar"));
    });
    if (!items.length) list.append(el("p", { class: "empty-list muted", text: "No steps here yet." }));
    if (CAN_EDIT) list.append(addBar(listPath, items.length));
    return list;
  }

  function addBar(listPath, index, extra = "") {
    return el("div", { class: `add-bar ${extra}`.trim(), dataset: { list: listPath, index } },
      el("span", { class: "muted", text: extra ? "Insert here:" : "Add:" }),
      KINDS.map((kind) => el("button", {
        type: "button", class: `add-step kind-${kind}`, dataset: { kind }, title: KIND_HELP[kind],
        text: `+ ${KIND_LABEL[kind]}`, onclick: () => addStep(listPath, index, kind),
      })));
  }

  // `children`: an outline card for the same step whose nested sections are moved over.
  function renderCard(path, step, position, { inspector = false, children = null } = {}) {
    const kind = isObject(step) && KINDS.includes(step.kind) ? step.kind : null;
    const card = el("article", { class: `${inspector ? "inspector-card" : "step-card"} kind-${kind || "unknown"}`, dataset: { path, kind: kind || "" } });
    const idLabel = el("span", { class: "step-id", text: (isObject(step) && step.id) || "(no id)" });
    card.append(
      el("header", { class: "card-head" },
        el("span", { class: "kind-badge", text: kind ? KIND_LABEL[kind] : "?" }),
        idLabel,
        el("span", { class: "step-title muted", text: (isObject(step) && step.title) || "" }),
        el("span", { class: "spacer" }),
        CAN_EDIT && cardControls(path, position, inspector)),
      el("ul", { class: "card-errors", "aria-live": "polite" }),
    );
    if (!kind) {
      card.append(el("p", { class: "hint", text: "This step has no known kind: fix it in the JSON or YAML view." }));
      return card;
    }
    const fields = el("div", { class: "card-fields" });
    fields.append(el("div", { class: "inline-fields" },
      textField(step, "id", "Id", { required: true, pattern: "[A-Za-z][A-Za-z0-9_]*", onInput: (v) => { idLabel.textContent = v || "(no id)"; }, refs: true, onCommit: renameStep }),
      textField(step, "title", "Title", { placeholder: "optional", onInput: (v) => { card.querySelector(".step-title").textContent = v; } })));
    kindFields(step, kind, fields, path);
    fields.append(limitsDetails(step));
    card.append(fields);
    if (inspector) {
      const inside = walkSteps([step]).length - 1;
      if (inside) card.append(el("p", { class: "hint", text: `${inside} step${inside === 1 ? "" : "s"} inside: select them on the canvas.` }));
      if (kind === "parallel" && !isObject(step.join)) card.append(joinSection(step, path));
      return card;
    }
    if (children) {
      card.append(...children.querySelectorAll(":scope > section.children"));
      return card;
    }
    for (const [key, label] of CHILD_LISTS[kind] || []) {
      const items = Array.isArray(step[key]) ? step[key] : [];
      card.append(el("section", { class: `children children-${key}`, dataset: { field: key } },
        el("h4", { text: label }), renderList(`${path}.${key}`, items)));
    }
    if (kind === "parallel") card.append(joinSection(step, path));
    return card;
  }

  function cardControls(path, { listPath, index, count, join }, inspector = false) {
    if (join) {
      return el("span", { class: "card-controls" },
        el("button", { type: "button", class: "icon delete", title: "Remove the join", "aria-label": "Remove the join", text: "✕", onclick: () => deleteStep(path) }));
    }
    return el("span", { class: "card-controls" },
      el("button", { type: "button", class: "icon move-up", title: "Move up", "aria-label": "Move up", text: "↑", disabled: index === 0, onclick: () => moveStep(listPath, index, -1) }),
      el("button", { type: "button", class: "icon move-down", title: "Move down", "aria-label": "Move down", text: "↓", disabled: index === count - 1, onclick: () => moveStep(listPath, index, 1) }),
      inspector
        ? el("button", { type: "button", class: "icon copy-step", title: "Copy (Ctrl+C); Ctrl+V pastes after the selected step", "aria-label": "Copy step", text: "Copy", onclick: () => { selectedPath = path; copySelected(); } })
        : el("button", {
          type: "button", class: "icon insert-below", title: "Insert a step below", "aria-label": "Insert a step below", text: "+",
          onclick: () => { insertAfter = insertAfter === path ? null : path; renderTree(); refreshRefs(); },
        }),
      el("button", { type: "button", class: "icon delete", title: "Delete step", "aria-label": "Delete step", text: "✕", onclick: () => deleteStep(path) }));
  }

  function joinSection(step, path) {
    const section = el("section", { class: "children children-join", dataset: { field: "join" } },
      el("h4", { text: "Join — an agent that receives every branch's output (optional)" }));
    if (isObject(step.join)) {
      section.append(renderCard(`${path}.join`, step.join, { join: true }));
    } else if (CAN_EDIT) {
      section.append(el("button", {
        type: "button", class: "add-join", text: "+ Join agent",
        onclick: () => { snapshot(); step.join = newJoin(step); changed({ structure: true }); },
      }));
    } else {
      section.append(el("p", { class: "muted", text: "No join." }));
    }
    return section;
  }

  function kindFields(step, kind, fields, path) {
    if (kind === "agent") {
      const prompt = textArea(step, "prompt", "Prompt template", { required: true, rows: 5 });
      fields.append(
        el("div", { class: "inline-fields" }, agentSelect(step),
          selectField(step, "output_format", "Output", [["", "text"], ["json", "json"]]),
          numberField(step, "max_turns", "Max turns", { min: 1, max: 100, placeholder: "agent's" })),
        prompt, refsHint(prompt.querySelector("textarea"), path));
    } else if (kind === "review") {
      const show = textArea(step, "show", "Show the reviewer (template)", { rows: 3, placeholder: "{{ steps.coder.output }}" });
      fields.append(textArea(step, "instructions", "Instructions", { required: true, rows: 2 }), show, refsHint(show.querySelector("textarea"), path));
    } else if (kind === "loop") {
      fields.append(conditionEditor(step, "until", path),
        el("div", { class: "inline-fields" },
          numberField(step, "max_iterations", "Max iterations", { min: 1, max: 100, placeholder: "3" }),
          selectField(step, "on_max", "When max is reached", [["", "continue"], ["fail", "fail the run"], ["review", "pause for review"]])));
    } else if (kind === "branch") {
      fields.append(conditionEditor(step, "if", path));
    } else if (kind === "parallel") {
      fields.append(el("div", { class: "inline-fields" },
        selectField(step, "on_branch_failure", "If a branch fails", [["", "continue with the others"], ["review", "pause for review"], ["fail", "fail the run"]]),
        numberField(step, "max_concurrency", "Max concurrency", { min: 1, max: 64, placeholder: "all" })));
    }
  }

  function limitsDetails(step) {
    const set = ["timeout_s", "retry", "on_failure"].some((k) => step[k] !== undefined);
    const failureChoices = [["", "default (pause for review; in a branch, the parallel's policy)"], ["review", "pause for review"], ["fail", "fail the run"], ["continue", "continue with the error as data"]];
    return el("details", { class: "limits", open: set },
      el("summary", { text: "Limits & failure" }),
      el("div", { class: "inline-fields" },
        numberField(step, "timeout_s", "Timeout (s per attempt)", { min: 0, step: "any", placeholder: "none" }),
        numberField(step, "retry.max_attempts", "Attempts", { min: 1, max: 10, placeholder: "1" }),
        numberField(step, "retry.backoff_s", "Backoff (s)", { min: 0, step: "any", placeholder: "0.5" }),
        selectField(step, "on_failure", "After the last failed attempt", failureChoices)));
  }

  // Field builders: each binds one control to one key of a step object (dotted for nested).

  function fieldBox(key, label, control, extraClass = "") {
    return el("label", { class: `field field-${key.replace(/\./g, "-")} ${extraClass}`.trim(), dataset: { field: key } }, label, control);
  }

  function textField(step, key, label, { required = false, placeholder, pattern, onInput, refs = false, onCommit } = {}) {
    let before = getIn(step, key) ?? "";
    const input = el("input", {
      value: getIn(step, key) ?? "", placeholder, pattern, required, autocomplete: "off", spellcheck: "false",
      onfocus: () => { before = getIn(step, key) ?? ""; },
      onchange: (e) => { if (onCommit) { const from = before; before = e.target.value; onCommit(from, e.target.value); } },
      oninput: (e) => {
        const v = e.target.value;
        setIn(step, key, v === "" && !required ? undefined : v);
        if (onInput) onInput(v);
        changed({ refs, step, field: key });
      },
    });
    return fieldBox(key, label, input);
  }

  function textArea(step, key, label, { required = false, rows = 3, placeholder } = {}) {
    const area = el("textarea", {
      rows, placeholder, required, value: getIn(step, key) ?? "",
      oninput: (e) => { const v = e.target.value; setIn(step, key, v === "" && !required ? undefined : v); changed({ step, field: key }); },
    });
    return fieldBox(key, label, area, "wide");
  }

  function numberField(step, key, label, { min, max, step: stepAttr = 1, placeholder } = {}) {
    const input = el("input", {
      type: "number", min, max, step: stepAttr, placeholder, value: getIn(step, key) ?? "",
      oninput: (e) => { setIn(step, key, e.target.value === "" ? undefined : Number(e.target.value)); changed({ step, field: key }); },
    });
    return fieldBox(key, label, input, "narrow");
  }

  function selectField(step, key, label, choices) {
    const current = getIn(step, key) ?? "";
    const options = choices.map(([value, text]) => el("option", { value, text }));
    if (!choices.some(([value]) => value === current)) options.push(el("option", { value: current, text: String(current) }));
    const select = el("select", {
      value: current,
      onchange: (e) => { setIn(step, key, e.target.value === "" ? undefined : e.target.value); changed({ step, field: key }); },
    }, options);
    return fieldBox(key, label, select);
  }

  function agentSelect(step) {
    const current = typeof step.agent === "string" ? step.agent : "";
    const options = [el("option", { value: "", text: "— choose an agent —" })];
    for (const agent of config.agents) {
      options.push(el("option", { value: agent.name, text: agent.provider === "scripted" ? `${agent.name} (scripted)` : agent.name, title: agent.description }));
    }
    if (current && !config.agents.some((a) => a.name === current)) options.push(el("option", { value: current, text: `${current} (not in this team)` }));
    const select = el("select", {
      class: "agent-select", value: current, required: true,
      onchange: (e) => { step.agent = e.target.value; changed({ step, field: "agent" }); },
    }, options);
    return fieldBox("agent", "Agent", select);
  }

  // The chips are built when their field gets focus, and at most MAX_CHIPS of them (the
  // inputs, then the nearest earlier steps); the rest are offered by a picker on the
  // #ref-options datalist. A chip per earlier step on every card made a 400-step outline
  // hold 80,000 buttons, all rebuilt on each keystroke.
  function refsHint(target, path = null) {
    const box = el("div", { class: "refs", dataset: path ? { path } : undefined });
    box.target = target;
    if (CAN_EDIT) target.addEventListener("focus", () => { if (!box.filled) fillRefs(box); });
    return box;
  }

  function fillRefs(box) {
    box.filled = true;
    const refs = availableRefs(box.dataset.path || null);
    const inputs = refs.filter((ref) => ref.startsWith("input."));
    const steps = refs.filter((ref) => !ref.startsWith("input."));
    const shownInputs = inputs.slice(0, MAX_CHIPS);
    const shown = [...shownInputs, ...steps.slice(Math.max(0, steps.length - (MAX_CHIPS - shownInputs.length)))];
    box.replaceChildren(el("span", { class: "muted", text: refs.length ? "Insert:" : "Declare inputs or add steps to reference them." }));
    for (const ref of shown) {
      box.append(el("button", {
        type: "button", class: "ref-chip", text: `{{ ${ref} }}`, disabled: !CAN_EDIT,
        onclick: () => insertText(box.target, `{{ ${ref} }}`),
      }));
    }
    if (shown.length < refs.length) {
      box.append(el("input", {
        class: "ref-pick", list: "ref-options", autocomplete: "off", spellcheck: "false",
        placeholder: `${refs.length - shown.length} more…`, "aria-label": "Insert another reference",
        onchange: (e) => {
          const ref = e.target.value.trim();
          if (!refs.includes(ref)) { e.target.classList.toggle("invalid", Boolean(ref)); return; }
          e.target.value = "";
          e.target.classList.remove("invalid");
          insertText(box.target, `{{ ${ref} }}`);
        },
      }));
    }
  }

  function insertText(textarea, text) {
    textarea.focus();
    textarea.setRangeText(text, textarea.selectionStart, textarea.selectionEnd, "end");
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function refreshRefs() {
    document.querySelectorAll(".refs").forEach((box) => { if (box.filled) fillRefs(box); });
    $("#ref-options").replaceChildren(...availableRefs().map((ref) => el("option", { value: ref })));
  }

  function conditionEditor(step, key) {
    const box = el("fieldset", { class: "condition", dataset: { field: key } },
      el("legend", { text: key === "until" ? "Until — stop repeating when…" : "If" }));
    const condition = step[key];
    if (isObject(condition) && condition.ref === undefined && (condition.all || condition.any || condition.not)) {
      appendAll(box,
        el("p", { class: "hint", text: "A compound condition (all / any / not): edit it in the JSON or YAML view." }),
        el("code", { class: "condition-summary", text: describeCondition(condition) }),
        CAN_EDIT && el("button", {
          type: "button", text: "Replace with a simple condition",
          onclick: () => { snapshot(); step[key] = { ref: "", op: "contains", value: "" }; changed({ structure: true }); },
        }));
      return box;
    }
    if (!isObject(condition)) step[key] = { ref: "", op: "contains", value: "" };
    const c = step[key];
    const needsValue = (op) => !["truthy", "falsy"].includes(op);
    const value = el("input", {
      class: "cond-value", placeholder: "value", value: c.value ?? "", "aria-label": "Value", disabled: !needsValue(c.op),
      oninput: (e) => { c.value = e.target.value; changed({ step, field: key }); },
    });
    box.append(el("div", { class: "cond-row" },
      el("input", {
        class: "cond-ref", placeholder: "steps.reviewer.output", list: "ref-options", value: c.ref ?? "", "aria-label": "Reference",
        autocomplete: "off", oninput: (e) => { c.ref = e.target.value; changed({ step, field: key }); },
      }),
      el("select", {
        class: "cond-op", "aria-label": "Operator", value: c.op || "contains",
        onchange: (e) => {
          c.op = e.target.value;
          if (needsValue(c.op)) { if (c.value === undefined) c.value = value.value; value.disabled = false; }
          else { delete c.value; value.disabled = true; }
          changed({ step, field: key });
        },
      }, OPS.map((op) => el("option", { value: op, text: op.replace("_", " ") }))),
      value,
      el("label", { class: "check" },
        el("input", { type: "checkbox", class: "cond-case", checked: Boolean(c.case_sensitive), onchange: (e) => { setIn(c, "case_sensitive", e.target.checked || undefined); changed({ step, field: key }); } }),
        "case sensitive")));
    return box;
  }

  function describeCondition(c) {
    if (!isObject(c)) return "?";
    if (c.ref !== undefined) return `${c.ref} ${c.op || "?"}${c.value !== undefined ? ` ${JSON.stringify(c.value)}` : ""}`;
    if (Array.isArray(c.all)) return `all(${c.all.map(describeCondition).join(", ")})`;
    if (Array.isArray(c.any)) return `any(${c.any.map(describeCondition).join(", ")})`;
    if (c.not !== undefined) return `not(${describeCondition(c.not)})`;
    return "?";
  }

  function lockIfReadOnly(root) {
    if (CAN_EDIT) return;
    root.querySelectorAll("input, select, textarea, button").forEach((node) => {
      if (node.classList.contains("tab") || node.closest(".fc-controls")) return; // tabs and zoom stay usable
      if (node.classList.contains("spec-text")) node.readOnly = true;
      else node.disabled = true;
    });
  }

  // ------------------------------------------------------------------ errors

  function clearErrors() {
    // Name and note errors come from a save attempt, not from checking the spec: save() clears them.
    document.querySelectorAll('.card-errors, .field-errors:not([data-for="name"]):not([data-for="note"]), #problem-list')
      .forEach((list) => list.replaceChildren());
    document.querySelectorAll(".has-errors").forEach((node) => node.classList.remove("has-errors"));
    errorPaths = new Map();
    if (canvas) canvas.clearMarks("fc-error");
    document.querySelectorAll(".invalid:not(#pipeline-name):not(#version-note)").forEach((node) => node.classList.remove("invalid"));
  }

  function showErrors(errors) {
    clearErrors();
    const cards = new Map([...document.querySelectorAll(".step-card")].map((card) => [card.dataset.path, card]));
    const paths = new Set(stepPaths().map(([p]) => p));
    for (const error of errors) {
      const path = String(error.path || "");
      const parts = path ? path.split(".") : [];
      const message = friendly(String(error.message || ""));
      let card = null;
      let rest = [];
      for (let n = parts.length; n > 0 && !card; n -= 1) {
        card = cards.get(parts.slice(0, n).join(".")) || null;
        rest = parts.slice(n);
      }
      const label = card ? rest.join(".") : path;
      const owner = stepOwner(parts, paths);
      if (owner) {
        const text = owner.rest ? `${owner.rest}: ${message}` : message;
        errorPaths.set(owner.path, [...(errorPaths.get(owner.path) || []), text]);
        if (canvas) canvas.mark(owner.path, "fc-error", true);
        const inspected = $("#inspector-body > .inspector-card");
        if (inspected && inspected.dataset.path === owner.path) {
          inspected.classList.add("has-errors");
          inspected.querySelector(":scope > .card-errors").append(el("li", { text }));
          markField(inspected, owner.rest);
        }
      }
      if (card) {
        card.classList.add("has-errors");
        card.querySelector(":scope > .card-errors").append(el("li", { text: label ? `${label}: ${message}` : message }));
        markField(card, rest.join("."));
      } else if (!owner) {
        const area = fieldErrors(PIPELINE_FIELDS.includes(parts[0]) ? parts[0] : "general");
        area.append(el("li", { text: label ? `${label}: ${message}` : message }));
      }
      addProblem(path, message, card, owner && owner.path);
    }
    if (canvas) canvas.refresh(); // node tooltips list their errors
    return markRowProblems().length;
  }

  // The step a path belongs to: the longest prefix that names a step ("steps.0.body.1").
  function stepOwner(parts, paths) {
    for (let n = parts.length; n > 0; n -= 1) {
      const prefix = parts.slice(0, n).join(".");
      if (paths.has(prefix)) return { path: prefix, rest: parts.slice(n).join(".") };
    }
    return null;
  }

  function fieldErrors(name) {
    return document.querySelector(`.field-errors[data-for="${name}"]`) || document.querySelector('.field-errors[data-for="general"]');
  }

  function markField(card, field) {
    if (!field) return;
    const own = [...card.querySelectorAll("[data-field]")].filter((node) => node.closest(".step-card") === card);
    const first = field.split(".")[0];
    const target = own.find((node) => node.dataset.field === field) || own.find((node) => node.dataset.field === first);
    if (!target) return;
    target.classList.add("invalid");
    const details = target.closest("details");
    if (details) details.open = true;
  }

  function addProblem(path, message, card, stepPath) {
    const item = el("li", {},
      el("button", {
        type: "button", class: "problem link-like", text: `${path || "spec"}: ${message}`,
        onclick: () => {
          if (stepPath && canvas) { selectStep(stepPath, { focusCanvas: true }); return; }
          if (card) { card.scrollIntoView({ block: "center" }); card.classList.add("flash"); setTimeout(() => card.classList.remove("flash"), 900); }
        },
      }));
    $("#problem-list").append(item);
  }

  function setStatus(state, text) {
    const status = $("#validation-status");
    status.className = `validation-status ${state}`;
    status.textContent = text;
  }

  // ------------------------------------------------------------------ validation and text views

  function scheduleValidate(delay = 300) {
    validateSeq += 1; // answers to earlier requests are stale now
    clearTimeout(validateTimer);
    setStatus("pending", "Checking…");
    validateTimer = setTimeout(() => validate({ spec }), delay);
  }

  async function validate(body, { adopt = false } = {}) {
    const seq = ++validateSeq;
    let result;
    try {
      result = await postJson(config.validateUrl, body);
    } catch (err) {
      if (seq === validateSeq) setStatus("bad", "Could not reach the server to check the spec.");
      return;
    }
    if (seq !== validateSeq) return;
    const { response, data } = result;
    if (!response.ok) {
      // 422: refused before validation (too deep, a NUL character, a YAML alias), with the path.
      const refused = Array.isArray(data.errors) ? data.errors : [];
      if (refused.length) {
        showErrors(refused);
        if (adopt) $("#yaml-error").textContent = `${refused[0].path || "spec"}: ${refused[0].message}`;
        setStatus("bad", `Refused: ${refused[0].path || "spec"}: ${refused[0].message}`);
      } else {
        setStatus("bad", `The check failed (HTTP ${response.status}).`);
      }
      return;
    }
    if (adopt) {
      $("#yaml-error").textContent = data.parse_error ? data.errors[0].message : "";
      if (data.parse_error) {
        setStatus("bad", "The YAML does not parse; the tree shows the last document that did.");
        return;
      }
      if (isObject(data.document)) {
        yamlPending = null;
        spec = data.document;
        insertAfter = null;
        if (selectedPath && !isObject(getAt(selectedPath))) selectedPath = null;
        commit($("#spec-yaml"));
        renderSettings();
        renderTree();
        renderInspector();
        renderCanvas();
        refreshRefs();
        refreshJson();
        updateHistoryButtons();
      }
    }
    if (typeof data.yaml === "string") setYaml(data.yaml);
    const errors = Array.isArray(data.errors) ? data.errors : [];
    const count = errors.length + showErrors(errors);
    if (count) setStatus("bad", `${count} problem${count === 1 ? "" : "s"} to fix before saving`);
    else setStatus("ok", CAN_EDIT ? "Valid — ready to save" : "Valid");
  }

  function refreshJson() {
    const area = $("#spec-json");
    if (document.activeElement === area) return;
    area.value = JSON.stringify(spec, null, 2);
    $("#json-error").textContent = "";
  }

  // The server's YAML for the spec. It never replaces an edit not yet read into the spec
  // (only reading it, or dropYamlEdit, ends one): that text is what the user sees and
  // what a save saves.
  function setYaml(text) {
    lastYaml = text;
    const area = $("#spec-yaml");
    if (document.activeElement !== area && yamlPending === null) {
      area.value = text;
      $("#yaml-error").textContent = "";
    }
  }

  // Reads the YAML view's pending edit into the spec (the server parses it). True when the
  // spec now holds what the view shows; false when the text does not parse, was refused
  // or could not be sent: the view keeps the text and #yaml-error says why.
  async function readYaml() {
    if (yamlPending === null) return true;
    clearTimeout(yamlTimer);
    await validate({ text: yamlPending, format: "yaml" }, { adopt: true });
    return yamlPending === null;
  }

  // Undo, redo and a JSON edit replace the document: a YAML edit not read yet is dropped.
  function dropYamlEdit() {
    if (yamlPending === null) return;
    clearTimeout(yamlTimer);
    yamlPending = null;
    $("#yaml-error").textContent = "";
    if (lastYaml !== null && document.activeElement !== $("#spec-yaml")) $("#spec-yaml").value = lastYaml;
  }

  // Leaving the YAML view reads its last edit at once; it used to put the server's last
  // YAML back, so a click on "Save version" within 400 ms of typing saved the old spec.
  function onYamlBlur() {
    if (yamlPending !== null) readYaml();
    else if (!$("#yaml-error").textContent && lastYaml !== null) setYaml(lastYaml);
  }

  function onJsonInput(e) {
    let parsed;
    try {
      parsed = JSON.parse(e.target.value);
    } catch (err) {
      $("#json-error").textContent = `JSON does not parse: ${err.message}. The tree shows the last document that did.`;
      setStatus("bad", "The JSON does not parse.");
      return;
    }
    if (!isObject(parsed)) {
      $("#json-error").textContent = "A spec is a JSON object with a `steps` list.";
      return;
    }
    $("#json-error").textContent = "";
    spec = parsed;
    insertAfter = null;
    dropYamlEdit(); // the JSON view replaced the whole document: it is the latest word
    if (selectedPath && !isObject(getAt(selectedPath))) selectedPath = null;
    renderSettings();
    changed({ refs: true });
  }

  function onYamlInput(e) {
    dirty = true;
    clearTimeout(yamlTimer);
    clearTimeout(validateTimer);
    validateSeq += 1;
    setStatus("pending", "Reading the YAML…");
    const text = e.target.value;
    yamlPending = text;
    yamlTimer = setTimeout(() => validate({ text, format: "yaml" }, { adopt: true }), 400);
  }

  function showTab(name) {
    document.querySelectorAll(".tab").forEach((tab) => {
      const active = tab.dataset.tab === name;
      tab.classList.toggle("active", active);
      tab.setAttribute("aria-selected", String(active));
    });
    document.querySelectorAll(".tab-panel").forEach((panel) => { panel.hidden = panel.dataset.panel !== name; });
  }

  // ------------------------------------------------------------------ saving

  async function save() {
    const button = $("#save-version");
    if (!CAN_EDIT || !button || button.disabled) return;
    const status = $("#save-status");
    button.disabled = true;
    // The YAML view's last edit is read into the spec first: saved at once (Ctrl+S while
    // typing, or within the 400 ms before it is read), the spec from before it was saved,
    // and the edit was lost. A text view that does not parse saves nothing.
    if (yamlPending !== null) {
      status.className = "save-status";
      status.textContent = "Reading the YAML…";
    }
    const yamlRead = await readYaml();
    const unreadable = !yamlRead ? "The YAML view does not parse or was refused"
      : $("#json-error").textContent ? "The JSON view does not parse" : "";
    if (unreadable) {
      button.disabled = false;
      if (!yamlRead) showTab("yaml"); // where its error is
      status.className = "save-status bad";
      status.textContent = `${unreadable}: nothing was saved. Fix it (or undo) and save again.`;
      return;
    }
    const rows = markRowProblems();
    if (rows.length) {
      button.disabled = false;
      status.className = "save-status bad";
      status.textContent = `Not saved: ${rows[0].message}${rows.length > 1 ? ` (and ${rows.length - 1} more)` : ""}. Your edits are still here.`;
      return;
    }
    button.disabled = false;
    if (!dirty && !config.isNew && !config.isOldVersion) {
      status.className = "save-status";
      status.textContent = `No changes since v${config.latest}.`;
      return;
    }
    button.disabled = true;
    status.className = "save-status";
    status.textContent = "Saving…";
    document.querySelectorAll('.field-errors[data-for="name"], .field-errors[data-for="note"]').forEach((list) => list.replaceChildren());
    document.querySelectorAll("#pipeline-name, #version-note").forEach((input) => input.classList.remove("invalid"));
    const body = { spec, note: $("#version-note").value };
    if (config.isNew) body.name = $("#pipeline-name").value;
    else body.base_version = config.latest;  // another builder's save since this page loaded: 409, nothing lost
    let result;
    try {
      result = await postJson(config.saveUrl, body);
    } catch (err) {
      button.disabled = false;
      status.className = "save-status bad";
      status.textContent = "Could not reach the server. Nothing was saved; your edits are still here.";
      return;
    }
    const { response, data } = result;
    if (response.ok && data.ok) {
      dirty = false;
      status.className = "save-status ok";
      status.textContent = `Saved version ${data.version}.`;
      window.location.assign(data.url);
      return;
    }
    button.disabled = false;
    if (Array.isArray(data.errors) && data.errors.length) showErrors(data.errors);
    const formErrors = isObject(data.form_errors) ? data.form_errors : {};
    for (const [field, message] of Object.entries(formErrors)) {
      const known = ["name", "note"].includes(field);
      fieldErrors(known ? field : "general").append(el("li", { text: String(message) }));
      const input = known ? $(field === "name" ? "#pipeline-name" : "#version-note") : null;
      $("#problem-list").append(el("li", {}, el("button", {
        type: "button", class: "problem link-like", text: `${field || "save"}: ${message}`,
        onclick: () => { if (input) { input.scrollIntoView({ block: "center" }); input.focus(); } },
      })));
      if (input) input.classList.add("invalid");
    }
    const count = (data.errors || []).length + Object.keys(formErrors).length;
    status.className = "save-status bad";
    status.textContent = response.status === 403
      ? "You may not save pipelines in this team."
      : response.status === 409
        ? "Not saved: someone saved a newer version while you were editing. Your edits are still here."
        : `Not saved: ${count || "some"} problem${count === 1 ? "" : "s"} to fix. Your edits are still here.`;
  }

  // ------------------------------------------------------------------ start

  function renderAll() {
    renderSettings();
    renderTree();
    renderInspector();
    renderCanvas();
    refreshRefs();
    refreshJson();
  }

  function startCanvas() {
    const box = $("#flow-canvas");
    if (!box || !window.FlowCanvas) return;
    canvas = window.FlowCanvas.create(box, {
      readOnly: !CAN_EDIT,
      idOf: (step, path) => path,
      label: "Pipeline diagram: steps run top to bottom",
      onSelect: (path) => selectStep(path),
      onDrop,
      onKeyMove: keyMove,
      decorate: (path) => (errorPaths.has(path) ? { title: errorPaths.get(path).join("\n") } : null),
    });
    document.querySelectorAll(".palette-item").forEach((item) => {
      let press = null;
      item.addEventListener("pointerdown", (e) => { if (e.button === 0) press = { x: e.clientX, y: e.clientY }; });
      document.addEventListener("pointermove", (e) => {
        if (!press || Math.hypot(e.clientX - press.x, e.clientY - press.y) < 4) return;
        press = null;
        canvas.startDrag({ kind: item.dataset.kind }, e, `+ ${KIND_LABEL[item.dataset.kind]}`);
      });
      document.addEventListener("pointerup", () => { press = null; });
      // Keyboard and click: add after the selected step (or at the end).
      item.addEventListener("click", () => {
        const step = newStep(item.dataset.kind);
        let list = ensureList("steps");
        let index = list.length;
        if (selectedPath && !selectedPath.endsWith(".join")) {
          const { parent, key } = slotOf(selectedPath);
          if (Array.isArray(parent)) { list = parent; index = key + 1; }
        }
        list.splice(index, 0, step);
        selectedPath = pathOf(step);
        changed({ structure: true });
        canvas.focusNode(selectedPath);
      });
    });
  }

  // Alt+ArrowUp/Down on a focused node: move it within its list (keyboard alternative to dragging).
  function keyMove(path, delta) {
    if (!CAN_EDIT || path.endsWith(".join")) return;
    const { key } = slotOf(path);
    selectedPath = path;
    moveStep(splitPath(path).slice(0, -1).join("."), key, delta);
    if (canvas && selectedPath) canvas.focusNode(selectedPath);
  }

  function onShortcut(e) {
    const active = document.activeElement;
    const typing = active && (["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName) || active.isContentEditable);
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    if (mod && key === "s") { e.preventDefault(); save(); return; }
    if (typing) return;
    if (mod && ((key === "z" && e.shiftKey) || key === "y")) { e.preventDefault(); redo(); }
    else if (mod && key === "z") { e.preventDefault(); undo(); }
    else if (mod && key === "c" && !window.getSelection().toString()) { if (copySelected()) e.preventDefault(); }
    else if (mod && key === "x" && !window.getSelection().toString()) { if (cutSelected()) e.preventDefault(); }
    else if (mod && key === "v") { if (pasteStep({ inside: e.shiftKey })) e.preventDefault(); }
    else if ((e.key === "Delete" || e.key === "Backspace") && selectedPath && !mod) {
      e.preventDefault();
      const where = selectedPath;
      if (deleteStep(where)) focusNear(where);
    } else if (e.key === "Escape" && selectedPath) { selectStep(null); }
  }

  function start() {
    startCanvas();
    renderAll();
    const json = $("#spec-json");
    const yamlArea = $("#spec-yaml");
    lockIfReadOnly($("#builder"));
    if (CAN_EDIT) {
      json.addEventListener("input", onJsonInput);
      json.addEventListener("blur", () => { if (!$("#json-error").textContent) refreshJson(); });
      yamlArea.addEventListener("input", onYamlInput);
      yamlArea.addEventListener("blur", onYamlBlur);
      $("#save-version").addEventListener("click", save);
      $("#undo").addEventListener("click", undo);
      $("#redo").addEventListener("click", redo);
      const name = $("#pipeline-name");
      if (name) name.addEventListener("input", () => { dirty = true; });
      document.addEventListener("keydown", onShortcut);
      window.addEventListener("beforeunload", (e) => { if (dirty) { e.preventDefault(); e.returnValue = ""; } });
    }
    document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => showTab(tab.dataset.tab)));
    validate({ spec });
  }

  start();
})();
