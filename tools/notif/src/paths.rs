//! Socket paths given as globs: `/run/nova/notifications-*.sock`.

use std::ffi::{CStr, CString};
use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;

/// Whether a path argument is a pattern to expand (it has `*`, `?` or `[`).
/// Abstract names (`@name`) are never patterns.
pub fn is_pattern(path: &str) -> bool {
    !path.starts_with('@') && path.contains(['*', '?', '['])
}

/// The live sockets matching `pattern` now (glob(3) syntax), sorted, of any
/// owner. Matches that are not sockets are left out (a glob picks up
/// publishers, not other files), and so are dead sockets: ones that refuse
/// connections, such as the files of workers that exited through `_exit()`.
#[cfg(test)]
pub fn expand(pattern: &str) -> Vec<String> {
    expand_trusted(pattern, &Trust::AnyOwner).paths
}

/// Whose sockets a glob follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Every owner's (--any-owner).
    AnyOwner,
    /// The owner of the directory holding the socket, and the user running
    /// the tool (the default).
    DirectoryOwnerOrMe,
    /// Only these users' (--owner).
    Only(Vec<u32>),
}

/// What a glob expands to: the live sockets to follow, and those left out
/// because a user not trusted owns them.
pub struct Matches {
    pub paths: Vec<String>,
    /// Left out: (path, its owner, the owner of its directory).
    pub other_owner: Vec<(String, u32, u32)>,
}

/// [`expand_trusted`] with `--any-owner` or the default trust.
pub fn expand_owned(pattern: &str, any_owner: bool) -> Matches {
    let trust = if any_owner {
        Trust::AnyOwner
    } else {
        Trust::DirectoryOwnerOrMe
    };
    expand_trusted(pattern, &trust)
}

/// The sockets matching `pattern`, split by owner: unless `trust` is
/// [`Trust::AnyOwner`], only the sockets owned by the user who owns their
/// directory or by the user running the tool (or by the users `--owner`
/// names) are kept, whatever else matches and however it sorts. Another user
/// who can create files in a watched directory (a shared 1777 one, say) can
/// put sockets there that match the pattern: they are left out, and never
/// connected to, so they can neither feed lines in among a service's nor
/// hold up the scan. (A symbolic link is judged by its own owner and its
/// target's: both must be trusted.) Only the trusted sockets are probed for
/// liveness, without blocking: one with a full listen backlog counts as live
/// (its reader then reports that it does not answer).
pub fn expand_trusted(pattern: &str, trust: &Trust) -> Matches {
    expand_trusted_except(pattern, trust, &|_| false)
}

/// [`expand_trusted`], leaving out the paths `skip` names before probing
/// them (the sockets a tail follows already: no probe connection each scan).
pub fn expand_trusted_except(pattern: &str, trust: &Trust, skip: &dyn Fn(&str) -> bool) -> Matches {
    let mut paths = Vec::new();
    let mut other_owner = Vec::new();
    for path in expand_sockets(pattern) {
        if skip(&path) {
            continue;
        }
        match owner_check(&path, trust) {
            None => {}
            Some(Err((uid, dir_owner))) => other_owner.push((path, uid, dir_owner)),
            Some(Ok(())) if !is_dead(&path) => paths.push(path),
            Some(Ok(())) => {}
        }
    }
    Matches { paths, other_owner }
}

/// Whether `trust` accepts the owner of the file at `path` (and of its
/// target, for a symbolic link): Err((the untrusted owner, the directory's
/// owner)) if not, None when there is no file there.
pub fn owner_check(path: &str, trust: &Trust) -> Option<Result<(), (u32, u32)>> {
    use std::os::unix::fs::MetadataExt;
    let link = std::fs::symlink_metadata(path).ok()?;
    let target = std::fs::metadata(path).ok()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let dir_owner = std::path::Path::new(path)
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.uid());
    let trusted = |uid: u32| match trust {
        Trust::AnyOwner => true,
        Trust::DirectoryOwnerOrMe => uid == dir_owner || uid == me,
        Trust::Only(uids) => uids.contains(&uid),
    };
    Some(match (trusted(link.uid()), trusted(target.uid())) {
        (true, true) => Ok(()),
        (false, _) => Err((link.uid(), dir_owner)),
        (true, false) => Err((target.uid(), dir_owner)),
    })
}

/// The warning for a socket [`expand_owned`] left out.
pub fn other_owner_warning(path: &str, uid: u32, dir_owner: u32) -> String {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    format!(
        "{path}: skipped: owned by uid {uid}, neither the directory's owner (uid {dir_owner}) \
         nor this user (uid {me}); not connected to (--any-owner follows it too)"
    )
}

/// Whether the socket at `path` refuses connections (nobody listens on it).
/// The probe never blocks: a socket whose listen backlog is full (a stuck
/// publisher, or one that never accepts) is live for this purpose. The probe
/// asks for stats at once, so that a live publisher never counts it as a
/// subscriber (a publisher waiting for its first subscriber must not start on
/// a probe that leaves at once).
pub fn is_dead(path: &str) -> bool {
    match crate::connect::nonblocking(path) {
        Ok(stream) => {
            use std::io::Write;
            let _ = (&stream).write_all(b"{\"stats\":true}\n");
            false
        }
        Err(err) => err.kind() == ErrorKind::ConnectionRefused,
    }
}

/// The directories to watch for new matches of `pattern`: its parent, when
/// the parent itself holds no pattern characters.
pub fn watch_dir(pattern: &str) -> Option<String> {
    let parent = std::path::Path::new(pattern).parent()?;
    let parent = if parent.as_os_str().is_empty() {
        "."
    } else {
        parent.to_str()?
    };
    (!is_pattern(parent)).then(|| parent.to_owned())
}

/// The sockets matching `pattern` now, live or dead, sorted.
pub fn expand_sockets(pattern: &str) -> Vec<String> {
    let Ok(c_pattern) = CString::new(pattern) else {
        return Vec::new();
    };
    // SAFETY: glob_t is plain data; all zeroes is its documented initial state.
    let mut found: libc::glob_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and glob_t; globfree below releases what glob allocated.
    let rc = unsafe { libc::glob(c_pattern.as_ptr(), 0, None, &mut found) };
    let mut paths = Vec::new();
    if rc == 0 {
        for i in 0..found.gl_pathc {
            // SAFETY: glob filled gl_pathv with gl_pathc valid C strings.
            let entry = unsafe { CStr::from_ptr(*found.gl_pathv.add(i)) };
            if let Ok(path) = entry.to_str() {
                paths.push(path.to_owned());
            }
        }
    }
    // SAFETY: found was initialised by glob (or is still all zeroes, which globfree accepts).
    unsafe { libc::globfree(&mut found) };
    paths.retain(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()));
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn patterns() {
        assert!(is_pattern("/run/x-*.sock"));
        assert!(is_pattern("/run/x-?.sock"));
        assert!(is_pattern("/run/x-[ab].sock"));
        assert!(!is_pattern("/run/x.sock"));
        assert!(!is_pattern("@name*"));
    }

    #[test]
    fn expands_to_sockets_only() {
        let dir = std::env::temp_dir().join(format!("notif-cli-glob-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _a = UnixListener::bind(dir.join("a.sock")).unwrap();
        let _b = UnixListener::bind(dir.join("b.sock")).unwrap();
        std::fs::write(dir.join("c.sock"), b"not a socket").unwrap();
        let got = expand(&format!("{}/*.sock", dir.display()));
        let want: Vec<String> = ["a.sock", "b.sock"]
            .iter()
            .map(|n| dir.join(n).display().to_string())
            .collect();
        assert_eq!(got, want);
        assert!(expand(&format!("{}/none-*.sock", dir.display())).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dead_sockets_are_left_out() {
        let dir = std::env::temp_dir().join(format!("notif-cli-dead-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _live = UnixListener::bind(dir.join("live.sock")).unwrap();
        drop(UnixListener::bind(dir.join("dead.sock")).unwrap()); // the file stays
        assert!(dir.join("dead.sock").exists());
        let got = expand(&format!("{}/*.sock", dir.display()));
        assert_eq!(got, vec![dir.join("live.sock").display().to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_owners_are_left_out_unless_asked() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("notif-cli-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _a = UnixListener::bind(dir.join("a.sock")).unwrap();
        let _b = UnixListener::bind(dir.join("b.sock")).unwrap();
        let pattern = format!("{}/*.sock", dir.display());
        let b = dir.join("b.sock").display().to_string();
        let me = std::fs::metadata(&b).unwrap().uid();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&b, Some(4242), None).unwrap();
            let got = expand_owned(&pattern, false);
            assert_eq!(got.paths.len(), 1);
            assert_eq!(got.other_owner, vec![(b.clone(), 4242, me)]);
            assert_eq!(expand_owned(&pattern, true).paths.len(), 2);
        } else {
            assert_eq!(expand_owned(&pattern, false).paths.len(), 2);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn watch_dirs() {
        assert_eq!(
            watch_dir("/run/nova/n-*.sock").as_deref(),
            Some("/run/nova")
        );
        assert_eq!(watch_dir("n-*.sock").as_deref(), Some("."));
        assert_eq!(watch_dir("/run/*/n.sock"), None);
    }
}
