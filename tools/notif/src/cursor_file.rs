//! `notif tail --cursor-file FILE`: where tail left off, per socket, so that
//! the next tail (a restarted script or agent) resumes after it.
//!
//! The file is one line, a JSON object from socket path (as followed: a
//! glob's match, `@name` for an abstract socket) to the cursor of the last
//! notification of that socket tail printed:
//! `{"/run/nova/notifications-1.sock":"5f3a9c0d12e4b7a8-1041"}`. Entries of
//! sockets this run does not follow are kept. An empty or missing file means
//! "no cursor yet".
//!
//! It is replaced atomically (a temporary file in the same directory, then
//! rename(2)), so a reader or a killed tail never sees half a file, and only
//! after the lines it names were flushed to stdout: the file never claims a
//! notification that was not printed. Writing is rate-limited to one every
//! [`INTERVAL`] while notifications flow, plus one at exit (also on SIGINT,
//! SIGTERM, SIGHUP: stop_signal.rs), so a tail that is killed otherwise
//! (SIGKILL) may print again, when restarted, what it printed since the last
//! save ([`INTERVAL`] of output, or more while stdout blocks): at least
//! once, never a gap. There is no fsync: after a
//! power loss the file may be older still (more repeats), never newer.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::exit::{self, Failure};

/// At most one write of the file per this long while notifications flow.
pub const INTERVAL: Duration = Duration::from_millis(100);
/// A cursor file is small (one cursor per socket); a larger file is not one.
const MAX_SIZE: u64 = 16 << 20;

pub struct CursorFile {
    path: PathBuf,
    cursors: BTreeMap<String, String>,
    /// Cursors changed since the last write.
    dirty: bool,
    last_write: Option<Instant>,
}

impl CursorFile {
    /// Reads `path` if it exists. A file that is not a cursor file is a usage
    /// error: tail will not overwrite what it does not understand.
    pub fn open(path: &Path) -> Result<CursorFile, Failure> {
        let shown = path.display();
        let cursors = match fs::File::open(path) {
            Ok(file) => {
                let mut text = Vec::new();
                file.take(MAX_SIZE + 1)
                    .read_to_end(&mut text)
                    .map_err(|e| Failure::new(exit::OTHER, format!("{shown}: cannot read: {e}")))?;
                if text.len() as u64 > MAX_SIZE {
                    return Err(not_cursor_file(path, "larger than 16 MiB"));
                }
                parse(&text).map_err(|why| not_cursor_file(path, &why))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(Failure::new(
                    exit::OTHER,
                    format!("{shown}: cannot read the cursor file: {e}"),
                ))
            }
        };
        Ok(CursorFile {
            path: path.to_owned(),
            cursors,
            dirty: false,
            last_write: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every (socket, cursor) saved.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.cursors.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Records that the notification `cursor` names, from `socket`, was printed
    /// (and flushed).
    pub fn set(&mut self, socket: &str, cursor: String) {
        if self.cursors.get(socket) != Some(&cursor) {
            self.cursors.insert(socket.to_owned(), cursor);
            self.dirty = true;
        }
    }

    /// When the file should be written next: None when nothing changed.
    pub fn due(&self) -> Option<Instant> {
        if !self.dirty {
            return None;
        }
        Some(
            self.last_write
                .map_or_else(Instant::now, |at| at + INTERVAL),
        )
    }

    /// Writes the file if it changed and its interval has passed (`force`:
    /// whatever the interval, as at exit).
    pub fn save_if_due(&mut self, force: bool) -> io::Result<()> {
        match self.due() {
            Some(at) if force || Instant::now() >= at => self.save(),
            _ => Ok(()),
        }
    }

    /// Writes the file now (atomically: a temporary file, then rename).
    pub fn save(&mut self) -> io::Result<()> {
        let mut text = serde_json::to_vec(&self.cursors).map_err(io::Error::other)?;
        text.push(b'\n');
        let temp = temp_path(&self.path);
        // create_new and no symlink following: a name planted in a shared
        // directory (tail may run as root) is not written through.
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o644)
                .open(&temp)
        };
        let mut file = match open() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Left by a tail that was killed while writing.
                fs::remove_file(&temp)?;
                open()?
            }
            other => other?,
        };
        let written = file.write_all(&text).and_then(|()| {
            drop(file);
            fs::rename(&temp, &self.path)
        });
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written?;
        self.dirty = false;
        self.last_write = Some(Instant::now());
        Ok(())
    }
}

fn not_cursor_file(path: &Path, why: &str) -> Failure {
    Failure::usage(format!(
        "{}: not a notif cursor file ({why}); it should hold one JSON object \
         {{\"<socket path>\":\"<cursor>\",...}}: fix or remove it",
        path.display()
    ))
}

fn parse(text: &[u8]) -> Result<BTreeMap<String, String>, String> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeMap::new());
    }
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let serde_json::Value::Object(members) = value else {
        return Err("not a JSON object".into());
    };
    members
        .into_iter()
        .map(|(path, cursor)| match cursor {
            serde_json::Value::String(cursor) if !cursor.is_empty() => Ok((path, cursor)),
            _ => Err(format!("the cursor of {path:?} is not a non-empty string")),
        })
        .collect()
}

/// `DIR/.NAME.tmp`: in the same directory, so that rename(2) is atomic.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cursor".into());
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("notif-cursor-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn saves_atomically_and_reads_back_keeping_other_sockets() {
        let dir = dir("roundtrip");
        let path = dir.join("cursors");
        let mut file = CursorFile::open(&path).unwrap();
        assert_eq!(file.entries().count(), 0);
        assert_eq!(file.due(), None);
        file.set("/a.sock", "0123456789abcdef-5".into());
        file.set("@b", "0123456789abcdef-7".into());
        assert!(file.due().is_some());
        file.save_if_due(false).unwrap();
        assert_eq!(file.due(), None);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"/a.sock\":\"0123456789abcdef-5\",\"@b\":\"0123456789abcdef-7\"}\n"
        );
        assert!(!temp_path(&path).exists());

        let mut again = CursorFile::open(&path).unwrap();
        let entries: Vec<_> = again.entries().collect();
        assert_eq!(
            entries,
            [
                ("/a.sock", "0123456789abcdef-5"),
                ("@b", "0123456789abcdef-7")
            ]
        );
        again.set("/a.sock", "0123456789abcdef-9".into());
        // Within the interval of the last write: not yet, unless forced.
        again.last_write = Some(Instant::now());
        again.save_if_due(false).unwrap();
        assert!(fs::read_to_string(&path).unwrap().contains("-5\""));
        again.save_if_due(true).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"/a.sock\":\"0123456789abcdef-9\""),
            "{text}"
        );
        assert!(text.contains("\"@b\":\"0123456789abcdef-7\""), "{text}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_temporary_file_or_planted_symlink_is_not_written_through() {
        let dir = dir("planted");
        let path = dir.join("cursors");
        let victim = dir.join("victim");
        fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, temp_path(&path)).unwrap();
        let mut file = CursorFile::open(&path).unwrap();
        file.set("/a", "x-1".into());
        file.save().unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"/a\":\"x-1\"}\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_is_not_a_cursor_file_is_refused_and_empty_is_none() {
        let dir = dir("refused");
        let path = dir.join("cursors");
        fs::write(&path, "").unwrap();
        assert_eq!(CursorFile::open(&path).unwrap().cursors.len(), 0);
        for text in [
            "5f3a9c0d12e4b7a8-1",
            "[\"a\"]",
            "{\"/a\":1}",
            "{\"/a\":\"\"}",
        ] {
            fs::write(&path, text).unwrap();
            let failure = CursorFile::open(&path).err().expect(text);
            assert_eq!(failure.code, exit::USAGE, "{text}");
            assert!(
                failure.message.contains("not a notif cursor file"),
                "{text}"
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
