// The microsite's behaviour, loaded as a file so the pages' CSP needs no inline script.
// Every page works without it; it only makes the forms nicer to use.
(() => {
  const amountForm = document.querySelector("form.pay");
  if (amountForm) {
    const typed = document.getElementById("custom_amount");
    const radios = amountForm.querySelectorAll("input[name=amount]");
    typed.addEventListener("input", () => {
      if (typed.value) radios.forEach((r) => { r.checked = false; });
    });
    radios.forEach((r) => r.addEventListener("change", () => { typed.value = ""; }));
  }
  const bankForm = document.querySelector("form.bank");
  if (bankForm) {
    bankForm.addEventListener("submit", (event) => {
      const button = document.getElementById("approve");
      if (button.disabled) { event.preventDefault(); return; }
      button.disabled = true;
      document.getElementById("spinner").classList.remove("hidden");
      document.getElementById("approve-text").textContent = "Approving…";
    });
  }
  const tag = document.getElementById("countdown");
  if (tag) {
    let left = Number(tag.dataset.remaining);
    const tick = () => {
      if (left <= 0) { tag.textContent = "expired"; return; }
      tag.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") + " left";
      left -= 1;
      setTimeout(tick, 1000);
    };
    tick();
  }
})();
