// Before the first paint: the theme the person chose last (else the system's).
(function () {
  try {
    var theme = localStorage.getItem("tf-theme");
    if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;
  } catch (e) { /* storage blocked: follow the system */ }
})();
