//! Secret references are confined and bounded: `file:` reads regular files
//! under the folder the host chooses (the manifest's by default), at most
//! the size of a value; `env:` reads the variables the host allows and never
//! the crate's own settings. Every escape attempt is refused with a reason
//! that names the reference, never a value.

use std::path::Path;
use std::time::{Duration, Instant};

use connective::manifest::{FileSource, SecretSource, SourceContext};
use connective::model::MAX_VALUE_LEN;

use crate::support::manifests::{folders, in_folder, reference, refused};

#[test]
fn a_file_reference_reads_under_the_manifests_folder() {
    let f = folders();
    let value = FileSource::default()
        .fetch(&reference("file:secrets/key.txt"), &in_folder(&f.manifest))
        .unwrap();
    assert_eq!(value.expose(), "the-key");
    // A link that stays inside the folder is followed.
    std::os::unix::fs::symlink("key.txt", f.manifest.join("secrets/alias")).unwrap();
    let value = FileSource::default()
        .fetch(&reference("file:./secrets/alias"), &in_folder(&f.manifest))
        .unwrap();
    assert_eq!(value.expose(), "the-key");
}

#[test]
fn parent_directories_and_absolute_paths_are_refused_before_anything_is_opened() {
    let f = folders();
    let ctx = in_folder(&f.manifest);
    let files = FileSource::default();
    refused(
        &files,
        "file:../elsewhere/private.txt",
        &ctx,
        "may not contain `..`",
    );
    refused(&files, "file:../../etc/passwd", &ctx, "may not contain `..`");
    refused(
        &files,
        "file:secrets/../../elsewhere/private.txt",
        &ctx,
        "may not contain `..`",
    );
    refused(&files, "file:/etc/shadow", &ctx, "must be a relative path");
    refused(&files, "file:/proc/self/environ", &ctx, "must be a relative path");
    let absolute = format!("file:{}", f.outside.join("private.txt").display());
    refused(&files, &absolute, &ctx, "must be a relative path");
    refused(&files, "file:.", &ctx, "names no file");
}

#[test]
fn symbolic_links_out_of_the_folder_are_refused() {
    let f = folders();
    let ctx = in_folder(&f.manifest);
    let link = |name: &str, to: &Path| std::os::unix::fs::symlink(to, f.manifest.join(name)).unwrap();
    link("passwd", Path::new("/etc/passwd"));
    link("environ", Path::new("/proc/self/environ"));
    link("private", &f.outside.join("private.txt"));
    link("elsewhere", &f.outside);
    let files = FileSource::default();
    for text in [
        "file:passwd",
        "file:environ",
        "file:private",
        "file:elsewhere/private.txt",
    ] {
        refused(
            &files,
            text,
            &ctx,
            "leads outside the folder secrets are read from",
        );
    }
}

#[test]
fn only_regular_files_are_read_and_a_fifo_does_not_hang() {
    let f = folders();
    let ctx = in_folder(&f.manifest);
    let fifo = f.manifest.join("secrets/pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::fs::create_dir(f.manifest.join("secrets/dir")).unwrap();
    let started = Instant::now();
    let files = FileSource::default();
    refused(&files, "file:secrets/pipe", &ctx, "is not a regular file");
    assert!(started.elapsed() < Duration::from_secs(5));
    refused(&files, "file:secrets/dir", &ctx, "is not a regular file");
    // Devices, through a root the host chose.
    let root = FileSource::under("/");
    refused(&root, "file:dev/urandom", &ctx, "is not a regular file");
    refused(&root, "file:dev/zero", &ctx, "is not a regular file");
}

#[test]
fn reads_are_bounded_whatever_size_the_file_reports() {
    let f = folders();
    let ctx = in_folder(&f.manifest);
    let path = |name: &str| f.manifest.join("secrets").join(name);
    // The most a value may have, with its line break, is read.
    std::fs::write(path("max.txt"), format!("{}\r\n", "k".repeat(MAX_VALUE_LEN))).unwrap();
    let value = FileSource::default()
        .fetch(&reference("file:secrets/max.txt"), &ctx)
        .unwrap();
    assert_eq!(value.expose().len(), MAX_VALUE_LEN);
    std::fs::write(path("over.txt"), "k".repeat(MAX_VALUE_LEN + 1)).unwrap();
    refused(
        &FileSource::default(),
        "file:secrets/over.txt",
        &ctx,
        "holds more than 65536 bytes",
    );
    // A sparse 64 GiB file: refused after reading a value's worth.
    let huge = std::fs::File::create(path("huge.bin")).unwrap();
    huge.set_len(64 << 30).unwrap();
    let started = Instant::now();
    refused(
        &FileSource::default(),
        "file:secrets/huge.bin",
        &ctx,
        "holds more than 65536 bytes",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A file that reports no size (procfs) is read up to the bound.
    let root = FileSource::under("/proc/self");
    let err = root.fetch(&reference("file:cmdline"), &ctx);
    assert!(err.is_ok() || err.unwrap_err().to_string().contains("not valid UTF-8"));
}

#[test]
fn the_host_chooses_the_folder() {
    let f = folders();
    // Parsed from text, a manifest has no folder: `file:` needs the host's.
    refused(
        &FileSource::default(),
        "file:secrets/key.txt",
        &SourceContext::default(),
        "there is no folder to read it from",
    );
    let hosts = FileSource::under(&f.manifest);
    let value = hosts
        .fetch(&reference("file:secrets/key.txt"), &SourceContext::default())
        .unwrap();
    assert_eq!(value.expose(), "the-key");
    // The host's folder wins over the manifest's.
    let value = FileSource::under(&f.outside)
        .fetch(&reference("file:private.txt"), &in_folder(&f.manifest))
        .unwrap();
    assert_eq!(value.expose(), "not-for-the-manifest");
    assert_eq!(hosts.root(), Some(f.manifest.as_path()));
}
