//! nextup behind Debian's nginx, configured with the site of deploy/nginx/: WebSockets
//! pass through, and the per-address limits count the real clients, not the proxy.

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws::WsClient;

/// A running nginx with the deploy site in front of an app; stopped on drop.
struct Nginx {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Nginx {
    fn start(upstream: &str) -> Nginx {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is installed (apt-get install nginx; .ci/run installs it)");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let site = std::fs::read_to_string(repo.join("deploy/nginx/nextup.conf")).unwrap();
        // The site's map and upstream, pointed at the app; its TLS servers are replaced by a
        // plain one on a free port that includes the same locations.
        let head = &site[..site.find("\nserver {").expect("a server block")];
        let head = head.replace("server 127.0.0.1:8080;", &format!("server {upstream};"));
        assert_ne!(
            head,
            site[..head.len()],
            "the upstream address was replaced"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("nextup-nginx-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        let locations = repo.join("deploy/nginx/nextup-proxy.conf");
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{}}\nhttp {{\n\
             access_log {d}/access.log;\nclient_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n{head}\n\
             server {{\n listen 127.0.0.1:{port};\n include {};\n}}\n}}\n",
            locations.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client whose connections come from `address` (any 127.0.0.0/8 address is local).
fn client_from(address: &str) -> awc::Client {
    let local: IpAddr = address.parse().unwrap();
    awc::Client::builder()
        .connector(awc::Connector::new().local_address(local))
        .timeout(Duration::from_secs(10))
        .finish()
}

async fn issue(
    client: &awc::Client,
    nginx: &Nginx,
    site: &Site,
    headers: &[(&str, &str)],
) -> (u16, Value, Option<String>) {
    let mut request = client.post(format!(
        "{}/api/v1/tenants/{}/tickets",
        nginx.base, site.slug
    ));
    for header in headers {
        request = request.insert_header(*header);
    }
    let mut response = request
        .send_json(&json!({ "service_id": site.services[0] }))
        .await
        .expect("issue sent through nginx");
    let body = response.body().await.unwrap();
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        request_id,
    )
}

#[actix_web::test]
async fn behind_nginx_a_kiosk_ticket_reaches_the_display_and_limits_count_real_clients() {
    let app = TestApp::spawn_with(|config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        config.issue_rate_per_minute = 1;
        config.issue_burst = 3;
    })
    .await;
    let site = app.site("clinic", 1, 1).await;
    let nginx = Nginx::start(app.base.trim_start_matches("http://"));

    // The display's session, through nginx.
    let ws_base = nginx.base.replacen("http", "ws", 1);
    let mut display = WsClient::connect_url(&format!("{ws_base}/ws/{}/totem", site.slug)).await;
    display.start().await;

    let kiosk = client_from("127.0.0.2");
    let (status, ticket, request_id) = issue(&kiosk, &nginx, &site, &[]).await;
    assert_eq!(status, 201, "{ticket}");
    let update = display.next_event().await;
    assert_eq!(update["type"], "ticket_update");
    assert_eq!(update["data"]["ticket"]["id"], ticket["id"], "{update}");
    // nginx's request id (32 hex digits) is the one nextup kept and answered.
    let request_id = request_id.expect("X-Request-Id");
    assert!(
        request_id.len() == 32 && request_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{request_id}"
    );

    // The kiosk at 127.0.0.2 spends its burst; forging X-Forwarded-For does not help it.
    let mut refused = None;
    for _ in 0..5 {
        let (status, body, _) =
            issue(&kiosk, &nginx, &site, &[("X-Forwarded-For", "127.0.0.9")]).await;
        if status == 429 {
            refused = Some(body);
            break;
        }
        assert_eq!(status, 201, "{body}");
    }
    let refused = refused.expect("the kiosk at 127.0.0.2 is refused past its burst");
    assert_eq!(refused["error"]["code"], "rate_limited");
    // Another client behind the same proxy still issues: the limit is per real client.
    let other = client_from("127.0.0.3");
    let (status, body, _) = issue(&other, &nginx, &site, &[]).await;
    assert_eq!(status, 201, "{body}");
}
