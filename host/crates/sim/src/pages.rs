//! The HTML pages of the login flow, and a proxy's error page.

/// The login page (GET /login.html, and the answer to a failed login).
pub(crate) const LOGIN_PAGE: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<title>Cybereason | Login</title></head>\n<body><app-login></app-login>\
<form method=\"post\" action=\"login.html\"><input name=\"username\"><input name=\"password\" \
type=\"password\"><input type=\"submit\" value=\"Login\"></form></body></html>\n";

/// The application page a successful login lands on.
pub(crate) const APP_PAGE: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<title>Cybereason</title></head>\n<body><app-root></app-root></body></html>\n";

/// The two-factor prompt.
pub(crate) const TWO_FACTOR_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Cybereason</title></head>\
<body><h1>Two factor authentication</h1><form method=\"post\" action=\"/\">\
<input name=\"totpCode\"><input type=\"submit\" name=\"submit\" value=\"Login\"></form></body></html>\n";

/// What a reverse proxy in front of the server answers when the upstream breaks (HTTP 200
/// here, as some proxies do): no reply of the API and no login page.
pub(crate) const PROXY_ERROR_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway\
</title></head>\n<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>\
</body></html>\n";
