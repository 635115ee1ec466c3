//! The SDK's promise: a hello world in at most 10 lines, shown in the README.

use taskhost_tests::repo_root;

/// Lines of code: not blank, not comments.
fn code_lines(source: &str) -> Vec<&str> {
    source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect()
}

#[test]
fn hello_world_is_at_most_ten_lines_and_is_in_the_readme() {
    let source = std::fs::read_to_string(repo_root().join("plugins/hello/src/lib.rs"))
        .expect("hello source");
    let lines = code_lines(&source);
    assert!(lines.len() <= 10, "hello is {} lines of code", lines.len());
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    assert!(
        readme.contains(source.trim()),
        "the README does not show plugins/hello/src/lib.rs verbatim"
    );
}
