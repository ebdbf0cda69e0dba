//! The HTML and TAP reports: their structure, and a real browser (Debian's `chromium`,
//! headless) rendering the HTML timeline: the DOM it builds has the lanes, the bars and the
//! failing step, and its screenshot shows them (pixels of the bar and failure colours).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("epollscope-html-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the herd scenario (four blocked waiters, all woken) and a scenario with a wrong
/// expectation; returns the HTML report and the TAP text.
fn reports(dir: &Path) -> (String, String) {
    let html = dir.join("report.html");
    let tap = dir.join("report.tap");
    let out = common::tool("epollscope")
        .arg("run")
        .arg("--family")
        .arg("unix")
        .arg("--html")
        .arg(&html)
        .arg("--tap")
        .arg(&tap)
        .arg("scenarios/herd-epoll-shared-listener.scn")
        .arg("tests/data/failing-step.scn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    (
        std::fs::read_to_string(html).unwrap(),
        std::fs::read_to_string(tap).unwrap(),
    )
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn tap_has_one_line_per_instance_and_the_failure() {
    let dir = scratch("tap");
    let (_, tap) = reports(&dir);
    let lines: Vec<&str> = tap.lines().collect();
    assert_eq!(lines[..2], ["TAP version 13", "1..2"]);
    assert_eq!(
        lines[2],
        "ok 1 - scenarios/herd-epoll-shared-listener.scn [unix]"
    );
    assert_eq!(lines[3], "not ok 2 - tests/data/failing-step.scn [unix]");
    assert!(
        tap.contains("  expected: \"epoll_wait(E, [], 16, 0) = 0\"\n"),
        "{tap}"
    );
    assert!(
        tap.contains("  at: \"tests/data/failing-step.scn:13:1\"\n"),
        "{tap}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tap_reports_an_unmet_kernel_requirement_as_a_skip_not_a_failure() {
    let dir = scratch("tap-skip");
    let scenario = dir.join("ancient.scn");
    std::fs::write(
        &scenario,
        "# Only for kernels before 2.6.\nfamily: unix\nkernel: < 2.6\n\
         socket(FAMILY, SOCK_STREAM, 0) = L\n",
    )
    .unwrap();
    let tap = dir.join("report.tap");
    let out = common::tool("epollscope")
        .arg("run")
        .arg("--tap")
        .arg(&tap)
        .arg(&scenario)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let tap = std::fs::read_to_string(&tap).unwrap();
    let line = tap.lines().nth(2).unwrap();
    assert!(
        line.starts_with(&format!(
            "ok 1 - {} [unix] # SKIP needs kernel < 2.6",
            scenario.display()
        )),
        "{tap}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn html_has_lanes_bars_wakeups_and_the_failing_step() {
    let dir = scratch("page");
    let (html, _) = reports(&dir);
    // Self-contained: nothing is fetched.
    for remote in ["http:", "https:", "<script", "<link", "src="] {
        assert!(!html.contains(remote), "the page refers to {remote}");
    }
    // main + four waiters in the herd, main + client in the failing scenario.
    assert_eq!(count(&html, "<g class=\"lane\""), 7);
    // Each waiter's epoll_wait blocks until the connection wakes it: a bar and a wake mark.
    assert!(count(&html, "<rect class=\"bar") >= 4, "{html}");
    assert_eq!(count(&html, "<path class=\"wake\""), 4);
    assert_eq!(count(&html, "failing-step\""), 1);
    assert!(html.contains("expected: epoll_wait(E, [], 16, 0) = 0"));
    assert!(html.contains("actual:   [main] epoll_wait(E, [{events=EPOLLIN"));
    assert!(html.contains("<section class=\"instance pass\">"));
    assert!(html.contains("<section class=\"instance fail\">"));
    assert!(html.contains("<label for=\"only-fail\">FAIL (1)</label>"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn trace_html_has_one_lane_per_process() {
    let dir = scratch("trace");
    let html = dir.join("trace.html");
    let probe = assert_cmd::cargo::cargo_bin("epoll-socket-test");
    let out = common::tool("epollscope")
        .arg("trace")
        .arg("--html")
        .arg(&html)
        .arg("--")
        .arg(probe)
        .arg("unix")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    // The probe forks one client: two processes.
    assert_eq!(count(&page, "<g class=\"lane\""), 2, "{page}");
    assert!(page.contains("data-lane=\"pid "));
    assert!(page.contains("epoll_wait("));
    // Every wait has timeout 0 and the accept is non-blocking: nothing slept, nothing woke.
    assert_eq!(count(&page, "<path class=\"wake\""), 0, "{page}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Traces the forking server with two EPOLLEXCLUSIVE waiters and one client, connected only
/// once every waiter is asleep in epoll_wait (it checks /proc): one of them is woken by it.
/// Returns the page's path.
fn traced_wakeup(dir: &Path) -> PathBuf {
    let html = dir.join("wake.html");
    let server = assert_cmd::cargo::cargo_bin("epoll-listen-fork");
    let out = common::tool("epollscope")
        .arg("trace")
        .arg("--html")
        .arg(&html)
        .arg("--")
        .arg(server)
        .args([
            "--exclusive",
            "--waiters",
            "2",
            "--self-connect",
            "1",
            "unix",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    html
}

/// The wake marks' titles: `woke: ` and the raw line of the call that slept.
fn woken(page: &str) -> Vec<&str> {
    page.split("<title>woke: ")
        .skip(1)
        .filter_map(|s| s.split("</title>").next())
        .collect()
}

#[test]
fn trace_html_marks_the_wakeup_of_a_call_that_slept() {
    let dir = scratch("trace-wake");
    let page = std::fs::read_to_string(traced_wakeup(&dir)).unwrap();
    // The master, its two waiters, the connection's child: a lane each at least.
    assert!(count(&page, "<g class=\"lane\"") >= 4, "{page}");
    let marks = woken(&page);
    assert_eq!(marks.len(), count(&page, "<path class=\"wake\""));
    // A waiter asleep in epoll_wait(..., -1) returned with the listener readable.
    assert!(
        marks.iter().any(|m| m.contains(" epoll_wait(")
            && m.contains(", -1) = 1 ")
            && m.contains("events=EPOLLIN")),
        "{marks:?}"
    );
    // Only calls that can block are ever marked.
    for m in &marks {
        assert!(
            [
                "epoll_wait(",
                "epoll_pwait(",
                "accept(",
                "accept4(",
                "connect(",
                "poll("
            ]
            .iter()
            .any(|c| m.contains(c)),
            "{m}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless chromium with its own profile directory; returns stdout.
fn browse(chromium: &Path, profile: &Path, args: &[&str]) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A page that draws the screenshot into a canvas and writes, into the DOM, how many pixels
/// have the bar fill (#90caf9), the failure red (#c62828), and are not white.
const PIXEL_CHECK: &str = r#"<!DOCTYPE html><html><body><img id="shot" src="data:image/png;base64,DATA">
<script>
const img = document.getElementById('shot');
function count() {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let bar = 0, red = 0, ink = 0;
  const near = (k, r, gg, b) => Math.abs(d[k]-r) < 8 && Math.abs(d[k+1]-gg) < 8 && Math.abs(d[k+2]-b) < 8;
  for (let k = 0; k < d.length; k += 4) {
    if (near(k, 0x90, 0xca, 0xf9)) bar++;
    if (near(k, 0xc6, 0x28, 0x28)) red++;
    if (d[k] < 200 || d[k+1] < 200 || d[k+2] < 200) ink++;
  }
  document.body.setAttribute('data-pixels', `bar=${bar} red=${red} ink=${ink} of=${c.width*c.height}`);
}
if (img.complete) count(); else img.onload = count;
</script></body></html>"#;

#[test]
fn chromium_renders_the_timeline() {
    let Some(chromium) = chromium() else {
        eprintln!("skipped: no chromium in PATH (apt-get install chromium)");
        return;
    };
    let dir = scratch("browser");
    reports(&dir);
    let url = format!("file://{}", dir.join("report.html").display());
    let profile = dir.join("profile");

    let dom = browse(&chromium, &profile, &["--dump-dom", &url]);
    assert!(dom.contains("<svg class=\"timeline\""), "{dom}");
    assert_eq!(count(&dom, "<g class=\"lane\""), 7, "{dom}");
    assert!(count(&dom, "<rect class=\"bar") >= 4);
    assert_eq!(count(&dom, "failing-step\""), 1);
    assert!(dom.contains("class=\"failure\""));

    let shot = dir.join("shot.png");
    browse(
        &chromium,
        &profile,
        &[
            "--window-size=1300,1100",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let check = dir.join("check.html");
    std::fs::write(&check, PIXEL_CHECK.replace("DATA", &base64(&png))).unwrap();
    let dom = browse(
        &chromium,
        &profile,
        &[
            "--virtual-time-budget=10000",
            "--dump-dom",
            &format!("file://{}", check.display()),
        ],
    );
    let pixels = dom
        .split("data-pixels=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("the pixel check did not run: {dom}"));
    let value = |key: &str| -> u64 {
        pixels
            .split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    // Four waiters' bars of ~16 px height and hundreds of px width, the red failure text.
    assert!(value("bar") > 2000, "{pixels}");
    assert!(value("red") > 50, "{pixels}");
    assert!(value("ink") > value("of") / 100, "{pixels}");

    // The trace page too: its lanes and wake marks as the browser builds them.
    let trace = format!("file://{}", traced_wakeup(&dir).display());
    let dom = browse(&chromium, &profile, &["--dump-dom", &trace]);
    assert!(dom.contains("<svg class=\"timeline\""), "{dom}");
    assert!(count(&dom, "<g class=\"lane\"") >= 4, "{dom}");
    assert!(count(&dom, "<path class=\"wake\"") >= 1, "{dom}");
    assert!(!woken(&dom).is_empty(), "{dom}");
    std::fs::remove_dir_all(dir).unwrap();
}
