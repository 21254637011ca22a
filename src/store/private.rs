//! The data directory is private to the relay's user: segment files hold whole bodies (names,
//! phone numbers), sled's files their keys. The folder is created 0700 and, at each open, what is
//! in it is narrowed to 0700 (folders) and 0600 (files): a directory written by an earlier
//! version, or under a wider umask, is made private. The binary also narrows its umask
//! (`process::umask`), so that what sled creates later is private from the start.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Creates `path` (0700) if missing and makes everything in it private.
pub(super) fn make_private(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    restrict(path)
}

/// Narrows the modes below `path` (links are not followed).
pub(super) fn restrict(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let wanted = if meta.is_dir() {
        DIR_MODE
    } else if meta.is_file() {
        FILE_MODE
    } else {
        return Ok(());
    };
    if meta.permissions().mode() & 0o777 != wanted {
        fs::set_permissions(path, Permissions::from_mode(wanted))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            restrict(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_directory_from_before_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(data.join("segments")).unwrap();
        fs::write(data.join("segments/00000001.seg"), b"body").unwrap();
        fs::write(data.join("db"), b"").unwrap();
        fs::set_permissions(&data, Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(data.join("db"), Permissions::from_mode(0o644)).unwrap();
        make_private(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("segments")), 0o700);
        assert_eq!(mode(&data.join("segments/00000001.seg")), 0o600);
        assert_eq!(mode(&data.join("db")), 0o600);
    }
}
