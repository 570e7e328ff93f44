//! The `/demo` page: two people open it with their tokens and an appointment id and get a P2P
//! call over the seed's events (plain HTML and the socket.io-client browser bundle, no build).

use actix_web::{HttpResponse, web};

const PAGE: &str = include_str!("../../static/demo.html");
/// socket.io-client 4.8.1's browser bundle (MIT), vendored so the page needs no CDN.
const CLIENT: &str = include_str!("../../static/socket.io.min.js");

pub fn routes() -> Vec<(&'static str, actix_web::Route)> {
    vec![
        ("/demo", web::get().to(page)),
        ("/demo/socket.io.min.js", web::get().to(client)),
    ]
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(PAGE)
}

async fn client() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(CLIENT)
}
