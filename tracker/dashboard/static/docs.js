// /docs: Swagger UI over our own OpenAPI document (no CDN, no inline script).
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var holder = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({ url: holder.getAttribute("data-url"), domNode: holder });
});
