// Sign-in: trade the pasted token for an HttpOnly session cookie, then open the queue.
"use strict";
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.hidden = true;
  const token = document.getElementById("token").value.trim();
  const response = await fetch("/api/login", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token}),
  });
  if (response.ok) {
    location.replace("/");
  } else {
    const body = await response.json().catch(() => ({}));
    // 401: a wrong token; 429: too many wrong ones from this address (the server says how long).
    error.textContent = response.status === 401
      ? "That token is not valid. Ask an admin for a new one."
      : body.detail || `Sign-in failed (HTTP ${response.status}).`;
    error.hidden = false;
  }
});
