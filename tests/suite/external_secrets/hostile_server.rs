//! The built-in Vault/OpenBao client against a server on loopback that
//! answers well-formed JSON with hostile numbers (a lease or TTL of
//! `u64::MAX` seconds): the client reads the secret or reports a typed
//! fault, and never panics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use connective::external::SecretStore;
use connective::external::vault::{VaultAuth, VaultStore};
use connective::model::{SecretLocation, StoreName};

/// Starts a server that answers every request with the JSON `answer` gives
/// for its path, and returns its address.
fn serve(answer: fn(&str) -> String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let json = answer(&path);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                json.len()
            );
            let _ = reader.get_mut().write_all(response.as_bytes());
        }
    });
    address
}

/// Every answer a client may ask for, each lease and TTL `u64::MAX` seconds.
fn endless(path: &str) -> String {
    let max = u64::MAX;
    if path.contains("/login") || path.contains("/renew-self") {
        format!(
            r#"{{"auth": {{"client_token": "hvs.hostile", "lease_duration": {max}, "renewable": true}}}}"#
        )
    } else if path.contains("/lookup-self") {
        format!(r#"{{"data": {{"ttl": {max}, "creation_ttl": {max}, "renewable": true}}}}"#)
    } else {
        format!(
            r#"{{"lease_duration": {max}, "data": {{"data": {{"password": "pw"}}, "metadata": {{"version": 1}}}}}}"#
        )
    }
}

fn read_with(auth: VaultAuth) {
    let address = serve(endless);
    let store = VaultStore::new(&address, auth).expect("a client");
    let location = SecretLocation::new(StoreName::vault(), "secret", "app/db").expect("a location");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let secret = runtime
        .block_on(store.read(&location))
        .unwrap_or_else(|e| panic!("the read failed: {e}"));
    assert_eq!(
        secret.get("password").map(|v| v.expose().to_owned()).as_deref(),
        Some("pw")
    );
}

#[test]
fn an_app_role_login_whose_lease_never_ends_is_read_without_a_panic() {
    read_with(VaultAuth::app_role("role", "secret"));
}

#[test]
fn a_token_whose_ttl_never_ends_is_read_without_a_panic() {
    read_with(VaultAuth::token("hvs.given"));
}
