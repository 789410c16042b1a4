//! Glob patterns for inputs: `*` and `?` within one path component, `**` for any number of
//! directories. Expansion walks only the directories a pattern can reach, never follows a
//! symlinked directory under `**` (a loop would never end), and stops `**` at 16 levels.

use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};

const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Wild(String),
    AnyDirs,
}

fn parts(pattern: &str) -> (PathBuf, Vec<Part>) {
    let root = if pattern.starts_with('/') {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    let parts = pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(|c| {
            if c == "**" {
                Part::AnyDirs
            } else if c.contains(['*', '?']) {
                Part::Wild(c.to_string())
            } else {
                Part::Lit(c.to_string())
            }
        })
        .collect();
    (root, parts)
}

/// What an expansion found: the regular files, and the directories it could not read
/// (other than missing ones, which are simply not there yet).
#[derive(Debug, Default)]
pub struct Expansion {
    /// Matching regular files.
    pub files: Vec<PathBuf>,
    /// Directories that exist but could not be listed, and why.
    pub unreadable: Vec<(PathBuf, std::io::Error)>,
    /// Regular files as their directory listed them, with the inode the listing gave: a
    /// look at the name that finds another file means the listing is out of date.
    pub listed: Vec<(PathBuf, u64)>,
}

/// Adds the regular files that `pattern` matches to `out.files`.
pub fn expand(pattern: &str, out: &mut Expansion) {
    let (root, parts) = parts(pattern);
    walk(&root, &parts, 0, out);
}

fn read_dir(dir: &Path, out: &mut Expansion) -> impl Iterator<Item = std::fs::DirEntry> {
    let d = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let r = std::fs::read_dir(d);
    if let Err(e) = &r {
        if e.kind() != std::io::ErrorKind::NotFound && e.kind() != std::io::ErrorKind::NotADirectory
        {
            out.unreadable.push((
                d.to_path_buf(),
                std::io::Error::new(e.kind(), e.to_string()),
            ));
        }
    }
    r.into_iter().flatten().flatten()
}

fn walk(dir: &Path, parts: &[Part], depth: usize, out: &mut Expansion) {
    let Some((first, rest)) = parts.split_first() else {
        if std::fs::metadata(dir).is_ok_and(|m| m.is_file()) {
            out.files.push(dir.to_path_buf());
        }
        return;
    };
    match first {
        Part::Lit(s) => walk(&dir.join(s), rest, depth, out),
        Part::Wild(p) => {
            for e in read_dir(dir, out).collect::<Vec<_>>() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') && !p.starts_with('.') {
                    continue;
                }
                if wild(p.as_bytes(), name.as_bytes()) {
                    if rest.is_empty() && e.file_type().is_ok_and(|t| t.is_file()) {
                        out.listed.push((dir.join(name), e.ino()));
                    }
                    walk(&dir.join(name), rest, depth, out);
                }
            }
        }
        Part::AnyDirs => {
            walk(dir, rest, depth, out);
            if depth >= MAX_DEPTH {
                return;
            }
            for e in read_dir(dir, out).collect::<Vec<_>>() {
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                let hidden = e.file_name().to_str().is_none_or(|n| n.starts_with('.'));
                if is_dir && !hidden {
                    walk(&dir.join(e.file_name()), parts, depth + 1, out);
                }
            }
        }
    }
}

/// Matches one component: `*` any run of bytes, `?` one byte.
fn wild(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                back = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match back {
                Some((bp, bs)) => {
                    pi = bp + 1;
                    si = bs + 1;
                    back = Some((bp, bs + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether `path` matches a pattern: against the file name when the pattern has no `/`
/// (as exclude patterns may be written), else against the whole path, component by component.
pub fn matches(pattern: &str, path: &Path) -> bool {
    let Some(s) = path.to_str() else { return false };
    if !pattern.contains('/') {
        let name = s.rsplit('/').next().unwrap_or(s);
        return wild(pattern.as_bytes(), name.as_bytes());
    }
    let (_, pp) = parts(pattern);
    let comps: Vec<&str> = s
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    matches_parts(&pp, &comps)
}

fn matches_parts(p: &[Part], c: &[&str]) -> bool {
    match p.split_first() {
        None => c.is_empty(),
        Some((Part::AnyDirs, rest)) => (0..=c.len()).any(|i| matches_parts(rest, &c[i..])),
        Some((part, rest)) => match c.split_first() {
            None => false,
            Some((first, crest)) => {
                let ok = match part {
                    Part::Lit(l) => l == first,
                    Part::Wild(w) => wild(w.as_bytes(), first.as_bytes()),
                    Part::AnyDirs => unreachable!(),
                };
                ok && matches_parts(rest, crest)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_within_a_component() {
        assert!(wild(b"*.log", b"app.log"));
        assert!(wild(b"app*.log", b"app.log"));
        assert!(wild(b"a?p.log", b"app.log"));
        assert!(!wild(b"*.log", b"app.log.1"));
        assert!(wild(b"*.log*", b"app.log.1"));
        assert!(wild(b"*a*b*c", b"xxaxxbxxc"));
        assert!(!wild(b"*a*b*c", b"xxaxxcxxb"));
    }

    #[test]
    fn excludes() {
        assert!(matches("*.gz", Path::new("/var/log/app.log.1.gz")));
        assert!(!matches("*.gz", Path::new("/var/log/app.log")));
        assert!(matches(
            "/var/log/**/debug/*",
            Path::new("/var/log/a/b/debug/x.log")
        ));
        assert!(matches(
            "/var/log/**/debug/*",
            Path::new("/var/log/debug/x.log")
        ));
        assert!(!matches(
            "/var/log/**/debug/*",
            Path::new("/var/log/a/x.log")
        ));
    }

    #[test]
    fn expands_nested_directories() {
        let d = std::env::temp_dir().join(format!("tailbeat-glob-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        for f in ["a.log", "b.txt", "x/c.log", "x/y/d.log", ".hidden/e.log"] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"").unwrap();
        }
        let mut out = Expansion::default();
        expand(&format!("{}/**/*.log", d.display()), &mut out);
        out.files.sort();
        let names: Vec<_> = out
            .files
            .iter()
            .map(|p| p.strip_prefix(&d).unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["a.log", "x/c.log", "x/y/d.log"]
                .map(PathBuf::from)
                .to_vec()
        );
        let mut out = Expansion::default();
        expand(&format!("{}/*.log", d.display()), &mut out);
        assert_eq!(out.files, vec![d.join("a.log")]);
        assert!(out.unreadable.is_empty());
        // A directory that cannot be listed (a symlink loop: root can read any mode) is
        // reported; a missing one is not.
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        let mut out = Expansion::default();
        expand(&format!("{}/loop/*.log", d.display()), &mut out);
        expand(&format!("{}/missing/*.log", d.display()), &mut out);
        assert_eq!(out.unreadable.len(), 1, "{:?}", out.unreadable);
        assert_eq!(out.unreadable[0].0, d.join("loop"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
