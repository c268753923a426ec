//! Every way open, emit and the option setters fail: the errno a C caller gets
//! and a message that says what went wrong and what to do.

use crate::common;

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use common::*;
use notif::{Error, Options, Publisher};

fn open_err(path: impl AsRef<std::path::Path>, options: &Options) -> Error {
    match Publisher::open_with(path, options) {
        Ok(_) => panic!("open unexpectedly succeeded"),
        Err(e) => e,
    }
}

fn assert_error(err: &Error, errno: i32, words: &[&str]) {
    assert_eq!(
        err.errno(),
        errno,
        "errno {} where {} was expected: {}",
        err.errno(),
        errno,
        err.message()
    );
    let message = err.message();
    assert!(!message.is_empty());
    assert_eq!(err.to_string(), message);
    for word in words {
        assert!(
            message.contains(word),
            "message {message:?} does not mention {word:?}"
        );
    }
}

// ---- emit ----

#[test]
fn each_invalid_fixture_is_rejected_with_einval_while_a_subscriber_listens() {
    let (_dir, publisher, mut subscriber) = publisher_and_reader("invalid");
    let invalid_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&invalid_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures missing: {names:?}");
    for path in &names {
        let input = std::fs::read(path).unwrap();
        let err = publisher
            .emit(&input)
            .expect_err(&format!("{} was accepted", path.display()));
        assert_error(&err, libc::EINVAL, &["rejected"]);
    }
    // Nothing of them reached the subscriber: the next line is the valid one.
    publisher.emit(b"{\"valid\":true}").unwrap();
    assert_eq!(subscriber.line(), b"{\"valid\":true}");
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.rejected, names.len() as u64);
    assert_eq!(stats.emitted, 1);
    assert_eq!(stats.delivered, 1);
}

#[test]
fn a_notification_whose_first_member_is_named_notif_is_rejected_and_counted() {
    let (_dir, publisher, mut subscriber) = publisher_and_reader("reserved");
    let posing = [
        &br#"{"notif":{"dropped":1000000}}"#[..],
        br#"{"notif":{"error":"refused","reason":"denied"}}"#,
        b" {\n \"notif\" : {\"dropped\":1}}",
        br#"{"\u006eotif":{"dropped":1}}"#,
        br#"{"notif":1,"event_type":"x"}"#,
    ];
    for input in posing {
        let err = publisher
            .emit(input)
            .expect_err(&format!("{} was accepted", input.escape_ascii()));
        assert_error(&err, libc::EINVAL, &["rejected", "\"notif\"", "reserved"]);
    }
    // Anywhere but first, the name is an ordinary member.
    publisher
        .emit(br#"{"event_type":"x","notif":{"dropped":1}}"#)
        .unwrap();
    assert_eq!(
        subscriber.line(),
        br#"{"event_type":"x","notif":{"dropped":1}}"#
    );
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.rejected, posing.len() as u64);
    assert_eq!(stats.emitted, 1);
}

#[test]
fn a_message_over_max_message_is_rejected_with_emsgsize_naming_the_limit() {
    let dir = TempDir::new("emsgsize");
    let options = Options {
        max_message: 1000,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    let nova = fixture("nova-instance-update.json");
    let err = publisher.emit(&nova).unwrap_err();
    assert_error(
        &err,
        libc::EMSGSIZE,
        &["max_message", "1000", &nova.len().to_string()],
    );
    let err = publisher
        .emit(&fixture("nova-instance-update.pretty.json"))
        .unwrap_err();
    assert_error(
        &err,
        libc::EMSGSIZE,
        &["max_message", &nova.len().to_string()],
    );
    // The limit is inclusive: exactly max_message bytes pass, one more does not.
    let exact = numbered(0, 0, 1000 - numbered(0, 0, 0).len());
    assert_eq!(exact.len(), 1000);
    assert_eq!(publisher.emit(&exact).unwrap(), 1);
    let over = numbered(0, 1, 1001 - numbered(0, 1, 0).len());
    assert_eq!(publisher.emit(&over).unwrap_err().errno(), libc::EMSGSIZE);
    assert_eq!(subscriber.line(), exact);
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.rejected, 3);
    assert_eq!(stats.emitted, 1);
}

#[test]
fn max_message_applies_to_the_compact_form_so_bigger_pretty_input_that_fits_once_compact_is_accepted(
) {
    let dir = TempDir::new("pretty_fits");
    let nova = fixture("nova-instance-update.json");
    let pretty = fixture("nova-instance-update.pretty.json");
    let options = Options {
        max_message: nova.len(),
        ..Options::default()
    };
    assert!(pretty.len() > options.max_message);
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    assert_eq!(publisher.emit(&pretty).unwrap(), 1);
    assert_eq!(subscriber.line(), nova);
}

#[test]
fn a_full_backlog_gives_eagain_and_every_eagain_is_counted_in_dropped_backlog() {
    let dir = TempDir::new("eagain");
    // The smallest backlog there is, and many subscribers who never read, so the
    // server thread has work to do for every batch while the burst goes on.
    let options = Options {
        backlog: notif::MIN_SUBSCRIBER_BUFFER,
        max_message: 4096,
        subscriber_buffer: 64 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let subscribers: Vec<_> = (1..=50)
        .map(|n| RawReader::connect_to(&publisher, dir.socket(), n))
        .collect();
    let nova = fixture("nova-instance-update.json");
    let (mut ok, mut eagain, mut first_error) = (0u64, 0u64, None);
    let deadline = std::time::Instant::now() + PATIENCE;
    // Burst until the backlog has overflowed often and the silent subscribers
    // hold messages of their own (their kernel buffers are full): the emitter
    // may be much faster than the server thread, so let it catch up between bursts.
    let queued = |publisher: &Publisher| {
        let stats = publisher.stats();
        stats.fanout > stats.delivered + stats.dropped_slow
    };
    while (eagain < 100 || !queued(&publisher)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
        for _ in 0..1000 {
            match publisher.emit(&nova) {
                Ok(n) => {
                    assert_eq!(n, 50);
                    ok += 1;
                }
                Err(e) => {
                    assert_eq!(e.errno(), libc::EAGAIN, "{}", e.message());
                    first_error.get_or_insert(e);
                    eagain += 1;
                }
            }
        }
    }
    assert!(eagain > 0, "the backlog never filled in {ok} emits");
    assert_error(&first_error.unwrap(), libc::EAGAIN, &["backlog", "full"]);
    let stats = publisher.stats();
    assert_eq!(stats.dropped_backlog, eagain);
    assert_eq!(stats.emitted, ok);
    assert_eq!(stats.rejected, 0);
    // What the silent subscribers still had queued is dropped when they go.
    drop(subscribers);
    wait_for_subscribers(&publisher, 0);
    let stats = wait_for_quiet(&publisher);
    assert_eq!(stats.dropped_backlog, eagain);
    assert!(stats.dropped_closed > 0, "{stats:?}");
}

// ---- open: the path ----

#[test]
fn a_path_with_a_nul_byte_or_an_empty_path_is_einval() {
    let options = Options::default();
    assert_error(
        &Publisher::open_bytes(b"/tmp/a\0b.sock", &options).unwrap_err(),
        libc::EINVAL,
        &["NUL"],
    );
    assert_error(
        &Publisher::open_bytes(b"", &options).unwrap_err(),
        libc::EINVAL,
        &["empty"],
    );
    assert_error(&open_err("", &options), libc::EINVAL, &["empty"]);
    assert_error(
        &Publisher::open_bytes(b"@", &options).unwrap_err(),
        libc::EINVAL,
        &["empty"],
    );
}

/// A path of exactly `len` bytes inside `dir`.
fn path_of_len(dir: &TempDir, len: usize) -> PathBuf {
    let prefix = dir.path().as_os_str().as_bytes().len() + 1;
    assert!(
        prefix + 6 < len,
        "temporary directory path too long for this test"
    );
    let path = dir.join(&"s".repeat(len - prefix));
    assert_eq!(path.as_os_str().as_bytes().len(), len);
    path
}

#[test]
fn a_path_of_108_bytes_is_enametoolong_and_107_bytes_works() {
    let dir = TempDir::new("nametoolong");
    let options = Options::default();
    let too_long = path_of_len(&dir, 108);
    assert_error(
        &open_err(&too_long, &options),
        libc::ENAMETOOLONG,
        &["108", "107"],
    );
    assert!(!too_long.exists());
    let longest = path_of_len(&dir, 107);
    let publisher = Publisher::open_with(&longest, &options).unwrap();
    let mut subscriber = RawReader::connect_to(&publisher, &longest, 1);
    publisher.emit(b"{\"long\":true}").unwrap();
    assert_eq!(subscriber.line(), b"{\"long\":true}");
    publisher.close();
    assert!(!longest.exists());
}

#[test]
fn an_abstract_name_of_108_bytes_is_enametoolong_and_107_bytes_works() {
    let options = Options::default();
    let base = format!("notif-test-{}-", std::process::id());
    let name = |len: usize| format!("@{base}{}", "n".repeat(len - base.len()));
    assert_error(
        &Publisher::open_bytes(name(108).as_bytes(), &options).unwrap_err(),
        libc::ENAMETOOLONG,
        &["108"],
    );
    let publisher = Publisher::open_bytes(name(107).as_bytes(), &options).unwrap();
    publisher.close();
}

#[test]
fn a_missing_directory_is_enoent_naming_that_directory() {
    let dir = TempDir::new("enoent");
    let missing = dir.join("no-such-directory");
    let err = open_err(missing.join("notif.sock"), &Options::default());
    assert_error(
        &err,
        libc::ENOENT,
        &[missing.to_str().unwrap(), "does not exist"],
    );
    assert!(!missing.exists());
}

#[test]
fn a_parent_that_is_a_regular_file_is_enotdir() {
    let dir = TempDir::new("enotdir");
    let file = dir.join("plain");
    std::fs::write(&file, b"keep me").unwrap();
    let err = open_err(file.join("notif.sock"), &Options::default());
    assert_error(&err, libc::ENOTDIR, &[file.to_str().unwrap()]);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn a_regular_file_at_the_path_is_eexist_and_left_untouched() {
    let dir = TempDir::new("eexist_file");
    let path = dir.socket();
    std::fs::write(&path, b"precious data").unwrap();
    let err = open_err(&path, &Options::default());
    assert_error(&err, libc::EEXIST, &["regular file", "untouched"]);
    assert_eq!(std::fs::read(&path).unwrap(), b"precious data");
}

#[test]
fn a_directory_at_the_path_is_eexist_and_left_untouched() {
    let dir = TempDir::new("eexist_dir");
    let path = dir.socket();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside"), b"x").unwrap();
    let err = open_err(&path, &Options::default());
    assert_error(&err, libc::EEXIST, &["directory"]);
    assert_eq!(std::fs::read(path.join("inside")).unwrap(), b"x");
}

#[test]
fn a_fifo_at_the_path_is_eexist_and_left_untouched() {
    let dir = TempDir::new("eexist_fifo");
    let path = dir.socket();
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c_path is NUL-terminated.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let err = open_err(&path, &Options::default());
    assert_error(&err, libc::EEXIST, &["FIFO"]);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[test]
fn a_symlink_at_the_path_is_eexist_and_neither_it_nor_its_target_is_touched() {
    let dir = TempDir::new("eexist_link");
    let target = dir.join("target");
    std::fs::write(&target, b"target data").unwrap();
    let path = dir.socket();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    assert_error(
        &open_err(&path, &Options::default()),
        libc::EEXIST,
        &["symbolic link"],
    );
    assert_eq!(std::fs::read_link(&path).unwrap(), target);
    assert_eq!(std::fs::read(&target).unwrap(), b"target data");
    // A dangling link is not followed either.
    std::fs::remove_file(&target).unwrap();
    assert_error(
        &open_err(&path, &Options::default()),
        libc::EEXIST,
        &["symbolic link"],
    );
    assert!(!target.exists());
}

#[test]
fn a_live_publisher_at_the_path_is_eaddrinuse_and_keeps_working() {
    let dir = TempDir::new("eaddrinuse");
    let first = Publisher::open(dir.socket()).unwrap();
    let mut subscriber = RawReader::connect_to(&first, dir.socket(), 1);
    let err = open_err(dir.socket(), &Options::default());
    assert_error(
        &err,
        libc::EADDRINUSE,
        &["already", dir.socket().to_str().unwrap()],
    );
    // The second open probed the path with a connection of its own, which the
    // first publisher counts from its accept until it sees it hang up: wait
    // for the accept first (the probe may still be in the listen backlog
    // when the count reads 1), then for the hang-up.
    wait_until("the probe's connection accepted", || {
        first.stats().accepted == 2
    });
    wait_for_subscribers(&first, 1);
    assert_eq!(first.emit(b"{\"still\":\"here\"}").unwrap(), 1);
    assert_eq!(subscriber.line(), b"{\"still\":\"here\"}");
    // New subscribers still reach the first publisher at the path.
    let mut late = RawReader::connect_to(&first, dir.socket(), 2);
    first.emit(b"{\"n\":2}").unwrap();
    assert_eq!(late.line(), b"{\"n\":2}");
    first.close();
    assert!(!dir.socket().exists());
}

#[test]
fn a_foreign_listener_at_the_path_is_eaddrinuse_and_keeps_its_file() {
    let dir = TempDir::new("foreign_listener");
    let listener = UnixListener::bind(dir.socket()).unwrap();
    let err = open_err(dir.socket(), &Options::default());
    assert_error(&err, libc::EADDRINUSE, &["already"]);
    assert!(dir.socket().exists());
    let _client = UnixStream::connect(dir.socket()).unwrap();
    // The probe connection and ours are both in its queue: accept succeeds.
    listener.set_nonblocking(false).unwrap();
    listener.accept().unwrap();
}

#[test]
fn eaddrinuse_names_the_pid_and_user_of_the_process_holding_the_path() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    // The holder is another process of another user (uid 65534), so the names
    // in the message can only come from the probe connection's SO_PEERCRED.
    let dir = TempDir::new("holder");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import socket, sys\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.bind(sys.argv[1]); s.listen(8)\n\
             print('ready', flush=True); sys.stdin.read()",
        ])
        .arg(dir.socket())
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs as uid 65534");
    let mut ready = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");

    let err = open_err(dir.socket(), &Options::default());
    // SAFETY: getpwuid's result is read at once, on this thread.
    let nobody = unsafe {
        let entry = libc::getpwuid(65534);
        assert!(!entry.is_null(), "uid 65534 has no name here");
        std::ffi::CStr::from_ptr((*entry).pw_name)
            .to_string_lossy()
            .into_owned()
    };
    let holder_says = format!("(pid {}, user {nobody})", holder.id());
    assert_error(
        &err,
        libc::EADDRINUSE,
        &[
            &holder_says,
            "already publishing",
            dir.socket().to_str().unwrap(),
        ],
    );
    drop(holder.stdin.take());
    holder.wait().unwrap();
}

#[test]
fn an_os_error_message_has_no_rust_os_error_suffix() {
    // A directory component that is a symbolic link loop: ELOOP, reported with
    // the system's own words and nothing after them.
    let dir = TempDir::new("eloop");
    std::os::unix::fs::symlink(dir.join("b"), dir.join("a")).unwrap();
    std::os::unix::fs::symlink(dir.join("a"), dir.join("b")).unwrap();
    let err = open_err(dir.join("a").join("notif.sock"), &Options::default());
    assert_error(&err, libc::ELOOP, &["Too many levels of symbolic links"]);
    assert!(
        !err.message().contains("os error"),
        "message {:?} ends with Rust's suffix",
        err.message()
    );
    assert!(err.message().ends_with("Too many levels of symbolic links"));
}

#[test]
fn an_abstract_name_in_use_is_eaddrinuse() {
    let name = format!("@notif-test-{}-busy", std::process::id());
    let first = Publisher::open_bytes(name.as_bytes(), &Options::default()).unwrap();
    let err = Publisher::open_bytes(name.as_bytes(), &Options::default()).unwrap_err();
    assert_error(&err, libc::EADDRINUSE, &["in use"]);
    first.close();
    Publisher::open_bytes(name.as_bytes(), &Options::default())
        .expect("the name is free again after close")
        .close();
}

#[test]
fn a_stale_socket_file_left_by_a_dead_listener_is_replaced() {
    let dir = TempDir::new("stale");
    drop(UnixListener::bind(dir.socket()).unwrap()); // std does not unlink
    assert!(dir.socket().exists());
    let publisher = Publisher::open(dir.socket()).unwrap();
    let mut subscriber = RawReader::connect_to(&publisher, dir.socket(), 1);
    publisher.emit(b"{\"fresh\":true}").unwrap();
    assert_eq!(subscriber.line(), b"{\"fresh\":true}");
    publisher.close();
    assert!(!dir.socket().exists());
    let mut rest = Vec::new();
    subscriber
        .stream()
        .try_clone()
        .unwrap()
        .read_to_end(&mut rest)
        .unwrap();
    assert!(rest.is_empty());
}

// ---- options ----

#[test]
fn option_setters_reject_what_cannot_work_with_einval() {
    let mut options = Options::default();
    let before = options.clone();
    assert_error(
        &options.set_mode(0o1777).unwrap_err(),
        libc::EINVAL,
        &["0777"],
    );
    assert_error(
        &options.set_mode(0o4600).unwrap_err(),
        libc::EINVAL,
        &["0777"],
    );
    assert_error(
        &options.set_mode(0o10000).unwrap_err(),
        libc::EINVAL,
        &["0777"],
    );
    assert_error(
        &options.set_subscriber_buffer(0).unwrap_err(),
        libc::EINVAL,
        &["minimum"],
    );
    assert_error(
        &options
            .set_subscriber_buffer(notif::MIN_SUBSCRIBER_BUFFER - 1)
            .unwrap_err(),
        libc::EINVAL,
        &["minimum"],
    );
    assert_error(
        &options.set_max_message(0).unwrap_err(),
        libc::EINVAL,
        &["max message"],
    );
    assert_error(
        &options
            .set_max_message(notif::MAX_MAX_MESSAGE + 1)
            .unwrap_err(),
        libc::EINVAL,
        &["max message"],
    );
    assert_error(
        &options.set_max_subscribers(0).unwrap_err(),
        libc::EINVAL,
        &["max subscribers"],
    );
    assert_error(
        &options
            .set_max_subscribers(notif::MAX_MAX_SUBSCRIBERS + 1)
            .unwrap_err(),
        libc::EINVAL,
        &["max subscribers"],
    );
    assert_error(
        &options.set_backlog(0).unwrap_err(),
        libc::EINVAL,
        &["backlog"],
    );
    assert_error(
        &options.set_group(b"").unwrap_err(),
        libc::EINVAL,
        &["group"],
    );
    assert_error(
        &options.set_group(b"99999999999").unwrap_err(),
        libc::EINVAL,
        &["range"],
    );
    // (gid_t)-1 is chown's "no change": accepting it would ignore the option.
    assert_error(
        &options.set_group(b"4294967295").unwrap_err(),
        libc::EINVAL,
        &["range", "4294967294"],
    );
    assert_eq!(options, before, "a rejected setting changed the options");
    // And the edges that are allowed.
    options.set_mode(0o777).unwrap();
    options.set_mode(0).unwrap();
    options
        .set_subscriber_buffer(notif::MIN_SUBSCRIBER_BUFFER)
        .unwrap();
    options.set_max_message(1).unwrap();
    options
        .set_max_subscribers(notif::MAX_MAX_SUBSCRIBERS)
        .unwrap();
    options.set_backlog(notif::MIN_SUBSCRIBER_BUFFER).unwrap();
}

#[test]
fn open_refuses_a_max_message_over_half_the_subscriber_buffer_or_backlog_and_creates_nothing() {
    let dir = TempDir::new("max_over_half");
    // Set directly (the setters refuse it at once, as the C setters do: below).
    let mut options = Options {
        subscriber_buffer: 64 * 1024,
        max_message: 32 * 1024 + 1,
        ..Options::default()
    };
    assert_error(
        &open_err(dir.socket(), &options),
        libc::EINVAL,
        &["max_message", "half"],
    );
    assert!(!dir.socket().exists());
    options.set_max_message(32 * 1024).unwrap();
    Publisher::open_with(dir.socket(), &options)
        .unwrap()
        .close();

    let options = Options {
        backlog: 64 * 1024,
        max_message: 32 * 1024 + 1,
        ..Options::default()
    };
    assert_error(
        &open_err(dir.socket(), &options),
        libc::EINVAL,
        &["backlog"],
    );
    assert!(!dir.socket().exists());

    // Through the setters, the second of a pair chosen refuses, as in C.
    let mut options = Options::default();
    options.set_subscriber_buffer(64 * 1024).unwrap();
    assert_error(
        &options.set_max_message(32 * 1024 + 1).unwrap_err(),
        libc::EINVAL,
        &["max_message", "half", "subscriber buffer"],
    );
    let mut options = Options::default();
    options.set_max_message(32 * 1024 + 1).unwrap();
    assert_error(
        &options.set_backlog(64 * 1024).unwrap_err(),
        libc::EINVAL,
        &["backlog"],
    );
    // A max_message left at its default follows a small buffer down.
    let mut options = Options::default();
    options.set_subscriber_buffer(64 * 1024).unwrap();
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    // emit looks at a line only while someone is connected.
    let _reader = std::os::unix::net::UnixStream::connect(dir.socket()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while publisher.subscribers() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reader never counted"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let line = format!("{{\"pad\":\"{}\"}}", "x".repeat(32 * 1024));
    assert_error(
        &publisher.emit(line.as_bytes()).unwrap_err(),
        libc::EMSGSIZE,
        &["32768"],
    );
    publisher.close();
}

/// Options' fields are public, so open must check what the setters check:
/// struct-update syntax is the natural way to set them in Rust.
#[test]

fn open_refuses_options_set_directly_that_the_setters_would_refuse() {
    let dir = TempDir::new("direct_fields");
    let cases: Vec<(&str, Options)> = vec![
        (
            "mode with set-uid bit",
            Options {
                mode: 0o4777,
                ..Options::default()
            },
        ),
        (
            "mode beyond 07777",
            Options {
                mode: 0o170777,
                ..Options::default()
            },
        ),
        (
            "zero max_message",
            Options {
                max_message: 0,
                ..Options::default()
            },
        ),
        (
            "zero max_subscribers",
            Options {
                max_subscribers: 0,
                ..Options::default()
            },
        ),
        (
            "max_subscribers over the ceiling",
            Options {
                max_subscribers: notif::MAX_MAX_SUBSCRIBERS + 1,
                ..Options::default()
            },
        ),
        (
            "subscriber buffer below the minimum",
            Options {
                subscriber_buffer: 1024,
                max_message: 100,
                ..Options::default()
            },
        ),
        (
            "backlog below the minimum",
            Options {
                backlog: 1024,
                max_message: 100,
                ..Options::default()
            },
        ),
    ];
    let mut accepted = Vec::new();
    for (what, options) in cases {
        match Publisher::open_with(dir.socket(), &options) {
            Ok(publisher) => {
                publisher.close();
                accepted.push(what);
            }
            Err(err) => {
                assert_eq!(err.errno(), libc::EINVAL, "{what}: {}", err.message());
                assert!(
                    !dir.socket().exists(),
                    "{what}: a socket file was left behind"
                );
            }
        }
    }
    assert!(accepted.is_empty(), "open accepted: {accepted:?}");
}
