//! `serve` with no `DATABASE_URL` on a machine where the default server cannot be used:
//! nextup runs a private PostgreSQL in `NEXTUP_DATA_DIR`, stops it on exit, and finds its
//! data again on the next start. The machine is simulated with an empty network namespace
//! (`unshare -n`: a loopback with nothing listening on 127.0.0.1:5432), inside which the
//! server runs and is reached.

use std::process::Command;

use serde_json::Value;

const SCRIPT: &str = r#"
set -u
ip link set lo up
cd "$WORK"
http_get() {
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&3
  cat <&3
  exec 3<&-
}
run() {
  n=$1
  "$NEXTUP" serve --demo > "out$n.txt" 2> "err$n.txt" &
  pid=$!
  for _ in $(seq 1 600); do
    grep -q 'listening on http://' "out$n.txt" && break
    sleep 0.1
  done
  port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "out$n.txt" | grep -o '[0-9]*$')
  echo "PRIVATE$n $(grep -c 'running a private one' "out$n.txt")"
  echo "PAGE$n $(http_get "$port" /t/demo/totem | head -n 1)"
  echo "SERVICES$n $(http_get "$port" /api/v1/tenants/demo/services | tail -n 1)"
  kill -TERM "$pid"
  wait "$pid"
  echo "EXIT$n $?"
  echo "LEFT$n $(pgrep -f -c "$DATA/pg" || true)"
}
run 1
run 2
"#;

#[test]
fn serve_runs_a_private_postgres_when_none_is_usable_and_stops_it_on_exit() {
    let work = std::env::temp_dir().join(format!("nextup-private-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&work).unwrap();
    let data = work.join("data");
    let mut command = Command::new("unshare");
    command
        .args(["-n", "bash", "-c", SCRIPT])
        .env("WORK", &work)
        .env("DATA", &data)
        .env("NEXTUP", crate::cli::nextup_binary())
        .env("NEXTUP_DATA_DIR", &data)
        .env("BIND_ADDR", "127.0.0.1:0");
    for name in [
        "DATABASE_URL",
        "JWT_SECRET",
        "STATIC_DIR",
        "LOG_FORMAT",
        "HTTP_WORKERS",
    ] {
        command.env_remove(name);
    }
    let output = command
        .output()
        .expect("unshare runs (util-linux; as root, or with user namespaces)");
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    let log = |n: u8| {
        std::fs::read_to_string(work.join(format!("err{n}.txt"))).unwrap_or_default()
            + &std::fs::read_to_string(work.join(format!("out{n}.txt"))).unwrap_or_default()
    };
    let context = format!(
        "script said:\n{said}\n{}\nrun 1:\n{}\nrun 2:\n{}",
        String::from_utf8_lossy(&output.stderr),
        log(1),
        log(2)
    );
    let value = |key: &str| -> String {
        said.lines()
            .find_map(|line| line.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key}: {context}"))
            .trim()
            .to_owned()
    };
    let services = |n: u8| -> Vec<String> {
        let body: Value = serde_json::from_str(&value(&format!("SERVICES{n}")))
            .unwrap_or_else(|e| panic!("services JSON ({e}): {context}"));
        body["services"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for n in [1, 2] {
        assert_eq!(value(&format!("PRIVATE{n}")), "1", "said so: {context}");
        assert!(
            value(&format!("PAGE{n}")).contains(" 200"),
            "run {n} served the page: {context}"
        );
        assert_eq!(value(&format!("EXIT{n}")), "0", "{context}");
        assert_eq!(
            value(&format!("LEFT{n}")),
            "0",
            "no postmaster left: {context}"
        );
    }
    assert_eq!(services(1).len(), 3, "{context}");
    assert_eq!(services(1), services(2), "the second start kept the data");
    assert!(data.join("pg/PG_VERSION").exists());
    let _ = std::fs::remove_dir_all(&work);
}
