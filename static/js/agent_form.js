// The agent form: show "Other model name" only when "Other…" is chosen, and only the provider
// options that apply to the chosen provider. Without this script every field stays visible.
(function () {
  const form = document.querySelector("form.agent-form");
  const provider = document.getElementById("id_provider");
  const choice = document.getElementById("id_model_choice");
  if (!form || !provider || !choice) return;
  const wrap = (name) => form.querySelector(".field-" + name);
  const only = { script: "scripted", max_tokens_field: "openai" };

  function update() {
    const other = wrap("model");
    if (other) other.hidden = choice.value !== "__other__" && !other.classList.contains("has-error");
    for (const [name, forProvider] of Object.entries(only)) {
      const el = wrap(name);
      if (el && !el.classList.contains("has-error")) el.hidden = provider.value !== forProvider;
    }
  }

  choice.addEventListener("change", () => {
    const picked = choice.value.split(":")[0];
    if (choice.value !== "__other__" && picked && picked !== provider.value) provider.value = picked;
    update();
  });
  provider.addEventListener("change", update);
  update();
})();
