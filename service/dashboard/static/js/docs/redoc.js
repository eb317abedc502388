// Starts ReDoc on /redoc from the locally served bundle (no inline script: the CSP forbids it).
const mount = document.getElementById("redoc");
Redoc.init(mount.dataset.openapiUrl, { hideDownloadButton: false }, mount);
