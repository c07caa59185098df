// The EGM screen's behaviour, served as a file (the page's Content-Security-Policy allows no
// inline script). It polls the status feed and updates the meter, state, QR image and the QR's
// link in place (never a reload), and turns on the copy button beside the link. Without
// JavaScript the page still shows the QR and its url as a plain link, as rendered.
(() => {
  const page = document.body.dataset;
  if (!page.statusUrl) return; // the unknown-EGM page has nothing to update
  const pollMs = Number(page.pollMs) || 1500;
  const $ = (id) => document.getElementById(id);
  const img = $("qr"), placeholder = $("qr-placeholder");
  const link = $("qr-url"), linkRow = $("qr-link"), copy = $("copy-url");

  function showQr(tokenId, url) {
    if (!tokenId) {
      img.classList.add("hidden"); placeholder.classList.remove("hidden");
      linkRow.classList.add("hidden");
      img.dataset.token = ""; return;
    }
    if (img.dataset.token !== tokenId) {
      img.src = page.qrPng + "?t=" + encodeURIComponent(tokenId);
      img.dataset.token = tokenId;
    }
    if (link.getAttribute("href") !== url) {
      link.href = url;
      link.textContent = url;
      copy.textContent = "Copy";
    }
    img.classList.remove("hidden"); placeholder.classList.add("hidden");
    linkRow.classList.remove("hidden");
  }

  function render(s) {
    $("meter").textContent = s.creditMeterText;
    const state = $("state");
    state.textContent = s.state.replace("_", " ");
    state.className = "state " + s.state;
    showQr(s.qrTokenId, s.url);
    $("token").textContent = s.qrTokenId ? s.qrTokenId.slice(0, 8) : "—";
    $("rotates").textContent = s.rotatesAt || "—";
    const failing = Boolean(s.error);
    $("error").classList.toggle("hidden", !failing);
    if (failing) {
      $("error-line").textContent = s.notice;
      $("error-detail").textContent = s.error;
    }
  }

  // The Clipboard API needs a secure context (https, localhost, 127.0.0.1); elsewhere the
  // older execCommand copies the link's text from a selection.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    const range = document.createRange();
    range.selectNodeContents(link);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    const copied = document.execCommand("copy");
    selection.removeAllRanges();
    return copied ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  copy.addEventListener("click", () => {
    copyText(link.getAttribute("href")).then(
      () => { copy.textContent = "Copied"; },
      () => { copy.textContent = "Select the link to copy"; });
  });
  copy.classList.remove("hidden"); // only a page that runs this can copy

  async function poll() {
    try {
      const response = await fetch(page.statusUrl, {cache: "no-store"});
      if (response.ok) render(await response.json());
    } catch (e) { /* the CMS is restarting: keep the last screen and try again */ }
    setTimeout(poll, pollMs);
  }
  setTimeout(poll, pollMs);
})();
