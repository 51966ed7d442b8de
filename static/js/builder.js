// The visual pipeline builder.
//
// The spec document (the same JSON the server stores) lives in `spec`. The page shows it
// three ways that stay in sync: a tree of step cards, a JSON text view and a YAML text
// view. Tree edits rewrite both texts; JSON text that parses replaces the document (and
// re-renders the tree); YAML text is parsed by the server's validate endpoint, which
// answers with the document, its YAML form and check_spec's errors. Errors carry paths
// ("steps.0.branches.2.prompt") and are shown on the card that owns the path.
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

  let spec = asDocument(JSON.parse($("#builder-spec").textContent));
  let dirty = false;
  let insertAfter = null; // path of the card showing an "insert below" bar
  let lastYaml = null;
  let validateTimer = null;
  let yamlTimer = null;
  let validateSeq = 0;
  let textSnapshot = null; // the document before a JSON/YAML editing session, for undo
  const undoStack = [];

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

  function availableRefs() {
    const inputs = isObject(spec.inputs) ? Object.keys(spec.inputs).filter((n) => NAME_RE.test(n)) : [];
    const ids = walkSteps(spec.steps).map((s) => s.id).filter((id) => typeof id === "string" && /^[A-Za-z]\w*$/.test(id));
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

  function snapshot() {
    undoStack.push(JSON.stringify(spec));
    if (undoStack.length > 100) undoStack.shift();
  }

  function takeTextSnapshot() {
    if (textSnapshot === null) return;
    undoStack.push(textSnapshot);
    textSnapshot = null;
  }

  function undo() {
    if (!undoStack.length) return;
    spec = asDocument(JSON.parse(undoStack.pop()));
    insertAfter = null;
    renderAll();
    changed();
  }

  function changed({ structure = false, refs = false } = {}) {
    dirty = true;
    if (structure) renderTree();
    if (structure || refs) refreshRefs();
    refreshJson();
    scheduleValidate();
    const undoButton = $("#undo");
    if (undoButton) undoButton.disabled = undoStack.length === 0;
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
    changed({ structure: true });
    const card = cardAt(`${listPath}.${target}`);
    if (card) {
      card.scrollIntoView({ block: "nearest" });
      const button = card.querySelector(delta < 0 ? ".move-up" : ".move-down");
      if (button && !button.disabled) button.focus();
    }
  }

  function deleteStep(path) {
    snapshot();
    const parts = splitPath(path);
    const key = parts.pop();
    const parent = parts.length ? getAt(parts.join(".")) : spec;
    if (Array.isArray(parent)) parent.splice(key, 1);
    else delete parent[key];
    insertAfter = null;
    changed({ structure: true });
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
          oninput: (e) => { setIn(spec, "description", e.target.value || undefined); changed(); },
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

  function syncInputs() {
    const inputs = {};
    for (const row of document.querySelectorAll("#input-rows .input-row")) {
      const nameInput = row.querySelector(".input-name");
      const name = nameInput.value.trim();
      nameInput.classList.toggle("invalid", Boolean(name) && (!NAME_RE.test(name) || name in inputs));
      if (!name) continue;
      const def = { ...row.extra, type: row.querySelector(".input-type").value };
      const description = row.querySelector(".input-description").value;
      if (description) def.description = description; else delete def.description;
      if (row.querySelector(".input-required").checked) delete def.required; else def.required = false;
      inputs[name] = def;
    }
    spec.inputs = inputs;
    changed({ refs: true });
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
    const outputs = {};
    for (const row of document.querySelectorAll("#output-rows .output-row")) {
      const name = row.querySelector(".output-name").value.trim();
      if (name) outputs[name] = row.querySelector(".output-ref").value.trim();
    }
    spec.outputs = outputs;
    changed();
  }

  function limitsSection() {
    const limits = isObject(spec.limits) ? spec.limits : {};
    const number = (key, label, step, hint) => el("label", { class: `limit-${key}` }, label,
      el("input", {
        type: "number", min: 0, step, value: limits[key] ?? "", placeholder: hint, "aria-label": label,
        oninput: (e) => { setIn(spec, `limits.${key}`, e.target.value === "" ? undefined : Number(e.target.value)); changed(); },
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

  function renderCard(path, step, position) {
    const kind = isObject(step) && KINDS.includes(step.kind) ? step.kind : null;
    const card = el("article", { class: `step-card kind-${kind || "unknown"}`, dataset: { path, kind: kind || "" } });
    const idLabel = el("span", { class: "step-id", text: (isObject(step) && step.id) || "(no id)" });
    card.append(
      el("header", { class: "card-head" },
        el("span", { class: "kind-badge", text: kind ? KIND_LABEL[kind] : "?" }),
        idLabel,
        el("span", { class: "step-title muted", text: (isObject(step) && step.title) || "" }),
        el("span", { class: "spacer" }),
        CAN_EDIT && cardControls(path, position)),
      el("ul", { class: "card-errors", "aria-live": "polite" }),
    );
    if (!kind) {
      card.append(el("p", { class: "hint", text: "This step has no known kind: fix it in the JSON or YAML view." }));
      return card;
    }
    const fields = el("div", { class: "card-fields" });
    fields.append(el("div", { class: "inline-fields" },
      textField(step, "id", "Id", { required: true, pattern: "[A-Za-z][A-Za-z0-9_]*", onInput: (v) => { idLabel.textContent = v || "(no id)"; }, refs: true }),
      textField(step, "title", "Title", { placeholder: "optional", onInput: (v) => { card.querySelector(".step-title").textContent = v; } })));
    kindFields(step, kind, fields, path);
    fields.append(limitsDetails(step));
    card.append(fields);
    for (const [key, label] of CHILD_LISTS[kind] || []) {
      const items = Array.isArray(step[key]) ? step[key] : [];
      card.append(el("section", { class: `children children-${key}`, dataset: { field: key } },
        el("h4", { text: label }), renderList(`${path}.${key}`, items)));
    }
    if (kind === "parallel") card.append(joinSection(step, path));
    return card;
  }

  function cardControls(path, { listPath, index, count, join }) {
    if (join) {
      return el("span", { class: "card-controls" },
        el("button", { type: "button", class: "icon delete", title: "Remove the join", "aria-label": "Remove the join", text: "✕", onclick: () => deleteStep(path) }));
    }
    return el("span", { class: "card-controls" },
      el("button", { type: "button", class: "icon move-up", title: "Move up", "aria-label": "Move up", text: "↑", disabled: index === 0, onclick: () => moveStep(listPath, index, -1) }),
      el("button", { type: "button", class: "icon move-down", title: "Move down", "aria-label": "Move down", text: "↓", disabled: index === count - 1, onclick: () => moveStep(listPath, index, 1) }),
      el("button", {
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
        prompt, refsHint(prompt.querySelector("textarea")));
    } else if (kind === "review") {
      const show = textArea(step, "show", "Show the reviewer (template)", { rows: 3, placeholder: "{{ steps.coder.output }}" });
      fields.append(textArea(step, "instructions", "Instructions", { required: true, rows: 2 }), show, refsHint(show.querySelector("textarea")));
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

  function textField(step, key, label, { required = false, placeholder, pattern, onInput, refs = false } = {}) {
    const input = el("input", {
      value: getIn(step, key) ?? "", placeholder, pattern, required, autocomplete: "off", spellcheck: "false",
      oninput: (e) => {
        const v = e.target.value;
        setIn(step, key, v === "" && !required ? undefined : v);
        if (onInput) onInput(v);
        changed({ refs });
      },
    });
    return fieldBox(key, label, input);
  }

  function textArea(step, key, label, { required = false, rows = 3, placeholder } = {}) {
    const area = el("textarea", {
      rows, placeholder, required, value: getIn(step, key) ?? "",
      oninput: (e) => { const v = e.target.value; setIn(step, key, v === "" && !required ? undefined : v); changed(); },
    });
    return fieldBox(key, label, area, "wide");
  }

  function numberField(step, key, label, { min, max, step: stepAttr = 1, placeholder } = {}) {
    const input = el("input", {
      type: "number", min, max, step: stepAttr, placeholder, value: getIn(step, key) ?? "",
      oninput: (e) => { setIn(step, key, e.target.value === "" ? undefined : Number(e.target.value)); changed(); },
    });
    return fieldBox(key, label, input, "narrow");
  }

  function selectField(step, key, label, choices) {
    const current = getIn(step, key) ?? "";
    const options = choices.map(([value, text]) => el("option", { value, text }));
    if (!choices.some(([value]) => value === current)) options.push(el("option", { value: current, text: String(current) }));
    const select = el("select", {
      value: current,
      onchange: (e) => { setIn(step, key, e.target.value === "" ? undefined : e.target.value); changed(); },
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
      onchange: (e) => { step.agent = e.target.value; changed(); },
    }, options);
    return fieldBox("agent", "Agent", select);
  }

  function refsHint(target) {
    const box = el("div", { class: "refs" });
    box.target = target;
    fillRefs(box);
    return box;
  }

  function fillRefs(box) {
    const refs = availableRefs();
    box.replaceChildren(el("span", { class: "muted", text: refs.length ? "Insert:" : "Declare inputs or add steps to reference them." }));
    for (const ref of refs) {
      box.append(el("button", {
        type: "button", class: "ref-chip", text: `{{ ${ref} }}`, disabled: !CAN_EDIT,
        onclick: () => insertText(box.target, `{{ ${ref} }}`),
      }));
    }
  }

  function insertText(textarea, text) {
    textarea.focus();
    textarea.setRangeText(text, textarea.selectionStart, textarea.selectionEnd, "end");
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function refreshRefs() {
    document.querySelectorAll(".refs").forEach(fillRefs);
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
      oninput: (e) => { c.value = e.target.value; changed(); },
    });
    box.append(el("div", { class: "cond-row" },
      el("input", {
        class: "cond-ref", placeholder: "steps.reviewer.output", list: "ref-options", value: c.ref ?? "", "aria-label": "Reference",
        autocomplete: "off", oninput: (e) => { c.ref = e.target.value; changed(); },
      }),
      el("select", {
        class: "cond-op", "aria-label": "Operator", value: c.op || "contains",
        onchange: (e) => {
          c.op = e.target.value;
          if (needsValue(c.op)) { if (c.value === undefined) c.value = value.value; value.disabled = false; }
          else { delete c.value; value.disabled = true; }
          changed();
        },
      }, OPS.map((op) => el("option", { value: op, text: op.replace("_", " ") }))),
      value,
      el("label", { class: "check" },
        el("input", { type: "checkbox", class: "cond-case", checked: Boolean(c.case_sensitive), onchange: (e) => { setIn(c, "case_sensitive", e.target.checked || undefined); changed(); } }),
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
      if (node.classList.contains("tab")) return;
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
    document.querySelectorAll(".invalid:not(#pipeline-name):not(#version-note)").forEach((node) => node.classList.remove("invalid"));
  }

  function showErrors(errors) {
    clearErrors();
    const cards = new Map([...document.querySelectorAll(".step-card")].map((card) => [card.dataset.path, card]));
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
      if (card) {
        card.classList.add("has-errors");
        card.querySelector(":scope > .card-errors").append(el("li", { text: label ? `${label}: ${message}` : message }));
        markField(card, rest.join("."));
      } else {
        const area = fieldErrors(PIPELINE_FIELDS.includes(parts[0]) ? parts[0] : "general");
        area.append(el("li", { text: label ? `${label}: ${message}` : message }));
      }
      addProblem(path, message, card);
    }
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

  function addProblem(path, message, card) {
    const item = el("li", {},
      el("button", {
        type: "button", class: "problem link-like", text: `${path || "spec"}: ${message}`,
        onclick: () => { if (card) { card.scrollIntoView({ block: "center" }); card.classList.add("flash"); setTimeout(() => card.classList.remove("flash"), 900); } },
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
        takeTextSnapshot();
        spec = data.document;
        insertAfter = null;
        renderSettings();
        renderTree();
        refreshRefs();
        refreshJson();
      }
    }
    if (typeof data.yaml === "string") setYaml(data.yaml);
    const errors = Array.isArray(data.errors) ? data.errors : [];
    showErrors(errors);
    if (errors.length) setStatus("bad", `${errors.length} problem${errors.length === 1 ? "" : "s"} to fix before saving`);
    else setStatus("ok", CAN_EDIT ? "Valid — ready to save" : "Valid");
  }

  function refreshJson() {
    const area = $("#spec-json");
    if (document.activeElement === area) return;
    area.value = JSON.stringify(spec, null, 2);
    $("#json-error").textContent = "";
  }

  function setYaml(text) {
    lastYaml = text;
    const area = $("#spec-yaml");
    if (document.activeElement !== area) {
      area.value = text;
      $("#yaml-error").textContent = "";
    }
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
    takeTextSnapshot();
    spec = parsed;
    insertAfter = null;
    renderSettings();
    renderTree();
    changed({ refs: true });
  }

  function onYamlInput(e) {
    dirty = true;
    clearTimeout(yamlTimer);
    clearTimeout(validateTimer);
    validateSeq += 1;
    setStatus("pending", "Reading the YAML…");
    const text = e.target.value;
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
      : `Not saved: ${count || "some"} problem${count === 1 ? "" : "s"} to fix. Your edits are still here.`;
  }

  // ------------------------------------------------------------------ start

  function renderAll() {
    renderSettings();
    renderTree();
    refreshRefs();
    refreshJson();
  }

  function start() {
    renderAll();
    const json = $("#spec-json");
    const yamlArea = $("#spec-yaml");
    lockIfReadOnly($("#builder"));
    if (CAN_EDIT) {
      for (const area of [json, yamlArea]) area.addEventListener("focus", () => { textSnapshot = JSON.stringify(spec); });
      json.addEventListener("input", onJsonInput);
      json.addEventListener("blur", () => { if (!$("#json-error").textContent) refreshJson(); });
      yamlArea.addEventListener("input", onYamlInput);
      yamlArea.addEventListener("blur", () => { if (!$("#yaml-error").textContent && lastYaml !== null) setYaml(lastYaml); });
      $("#save-version").addEventListener("click", save);
      $("#undo").addEventListener("click", undo);
      const name = $("#pipeline-name");
      if (name) name.addEventListener("input", () => { dirty = true; });
      document.addEventListener("keydown", (e) => {
        const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
        if ((e.ctrlKey || e.metaKey) && e.key === "s") { e.preventDefault(); save(); }
        else if ((e.ctrlKey || e.metaKey) && e.key === "z" && !typing && undoStack.length) { e.preventDefault(); undo(); }
      });
      window.addEventListener("beforeunload", (e) => { if (dirty) { e.preventDefault(); e.returnValue = ""; } });
    }
    document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => showTab(tab.dataset.tab)));
    validate({ spec });
  }

  start();
})();
