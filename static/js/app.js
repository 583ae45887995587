// Small progressive enhancements shared by every page. Pages work without this file.
document.addEventListener("htmx:responseError", (event) => {
  const status = event.detail.xhr.status;
  const box = document.createElement("div");
  box.className = "messages";
  box.innerHTML = "<li class='error'></li>";
  box.firstChild.textContent = status === 403 ? "没有权限 Not allowed." : `请求失败 Request failed (${status}).`;
  document.querySelector("main").prepend(box);
});
