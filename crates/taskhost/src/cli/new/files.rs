//! The files of a new plugin project, per language.

use super::{Lang, Template};

/// One file to write, relative to the project folder.
pub(super) struct File {
    pub path: String,
    pub contents: String,
    pub executable: bool,
}

/// A project: its files, the commands that build and run it, and the
/// component those commands produce.
pub(super) struct Project {
    pub language: &'static str,
    pub files: Vec<File>,
    pub commands: Vec<String>,
    pub artifact: String,
}

/// The input the hello example and its README use.
const EXAMPLE_INPUT: &str = r#"'{"name":"Ada"}'"#;

pub(super) fn project_files(
    lang: Lang,
    template: Template,
    name: &str,
    sdk_dependency: &str,
) -> Project {
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{sdk_dependency}}", sdk_dependency)
    };
    let task = fill(source(lang, template));
    let mut project = match lang {
        Lang::Rust => rust(name, task, &fill),
        Lang::Python => python(name, task),
        Lang::Js => js(name, task, &fill),
    };
    project.commands.push(format!(
        "taskhost run {} --input {EXAMPLE_INPUT}",
        project.artifact
    ));
    project
        .files
        .push(text("README.md", readme(name, &project)));
    project
}

/// The task's source: a template per language.
fn source(lang: Lang, template: Template) -> &'static str {
    match (lang, template) {
        (Lang::Rust, Template::Hello) => include_str!("templates/rust/lib.rs.in"),
        (Lang::Rust, Template::Workflow) => include_str!("templates/rust/workflow.rs.in"),
        (Lang::Python, Template::Hello) => include_str!("templates/python/app.py.in"),
        (Lang::Python, Template::Workflow) => include_str!("templates/python/workflow.py.in"),
        (Lang::Js, Template::Hello) => include_str!("templates/js/app.js.in"),
        (Lang::Js, Template::Workflow) => include_str!("templates/js/workflow.js.in"),
    }
}

fn rust(name: &str, task: String, fill: &dyn Fn(&str) -> String) -> Project {
    Project {
        language: "Rust",
        files: vec![
            text(
                "Cargo.toml",
                fill(include_str!("templates/rust/Cargo.toml.in")),
            ),
            text(
                ".cargo/config.toml",
                fill(include_str!("templates/rust/config.toml.in")),
            ),
            text("src/lib.rs", task),
            text(".gitignore", "/target\n".into()),
        ],
        commands: vec![
            "rustup target add wasm32-wasip2".into(),
            "cargo build --release".into(),
        ],
        artifact: format!(
            "target/wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ),
    }
}

/// The contract, for the language tools that build against it.
const WIT: &[(&str, &str)] = &[
    (
        "wit/task.wit",
        include_str!("../../../../../sdk/wit/task.wit"),
    ),
    (
        "wit/deps/cli.wit",
        include_str!("../../../../../sdk/wit/deps/cli.wit"),
    ),
    (
        "wit/deps/clocks.wit",
        include_str!("../../../../../sdk/wit/deps/clocks.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../../../../sdk/wit/deps/filesystem.wit"),
    ),
    (
        "wit/deps/http.wit",
        include_str!("../../../../../sdk/wit/deps/http.wit"),
    ),
    (
        "wit/deps/io.wit",
        include_str!("../../../../../sdk/wit/deps/io.wit"),
    ),
    (
        "wit/deps/random.wit",
        include_str!("../../../../../sdk/wit/deps/random.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../../../../sdk/wit/deps/sockets.wit"),
    ),
];

fn wit() -> impl Iterator<Item = File> {
    WIT.iter()
        .map(|(path, contents)| text(path, (*contents).to_owned()))
}

/// The Python SDK's pinned componentize-py, as in `sdk/python/requirements.txt`.
const PYTHON_REQUIREMENTS: &str = include_str!("../../../../../sdk/python/requirements.txt");

fn python(name: &str, task: String) -> Project {
    let artifact = format!("{name}.wasm");
    let mut files = vec![
        text("src/app.py", task),
        text(
            "src/taskhost_sdk/__init__.py",
            include_str!("../../../../../sdk/python/taskhost_sdk/__init__.py").into(),
        ),
        text(
            "src/taskhost_sdk/http.py",
            include_str!("../../../../../sdk/python/taskhost_sdk/http.py").into(),
        ),
        text("requirements.txt", PYTHON_REQUIREMENTS.into()),
        text(".gitignore", ".venv/\n__pycache__/\n*.wasm\n".into()),
    ];
    files.extend(wit());
    Project {
        language: "Python",
        files,
        commands: vec![
            "python3 -m venv .venv".into(),
            ".venv/bin/pip install -r requirements.txt".into(),
            format!(
                ".venv/bin/componentize-py -d wit -w task componentize -p src app -o {artifact}"
            ),
        ],
        artifact,
    }
}

/// The JavaScript SDK's pinned toolchain, as in `sdk/js/package.json`, and
/// its lockfile (so a new project installs exactly what this repository's
/// tests build with).
const JS_PACKAGE: &str = include_str!("../../../../../sdk/js/package.json");
const JS_LOCK: &str = include_str!("../../../../../sdk/js/package-lock.json");

fn js(name: &str, task: String, fill: &dyn Fn(&str) -> String) -> Project {
    let artifact = format!("{name}.wasm");
    let pinned = |package: &str| js_pinned(JS_PACKAGE, package).unwrap_or_default();
    let package = fill(include_str!("templates/js/package.json.in"))
        .replace(
            "{{componentize_js}}",
            &pinned("@bytecodealliance/componentize-js"),
        )
        .replace(
            "{{preview2_shim}}",
            &pinned("@bytecodealliance/preview2-shim"),
        )
        .replace("{{esbuild}}", &pinned("esbuild"));
    let mut files = vec![
        text("package.json", package),
        text(
            "package-lock.json",
            js_lock(JS_LOCK, name).unwrap_or_default(),
        ),
        text("src/app.js", task),
        text(
            "sdk/taskhost-sdk.js",
            include_str!("../../../../../sdk/js/taskhost-sdk.js").into(),
        ),
        File {
            path: "sdk/build-plugin.mjs".into(),
            contents: include_str!("../../../../../sdk/js/build-plugin.mjs").into(),
            executable: true,
        },
        text(".gitignore", "node_modules/\n*.wasm\n".into()),
    ];
    files.extend(wit());
    Project {
        language: "JavaScript",
        files,
        commands: vec!["npm ci".into(), "npm run build".into()],
        artifact,
    }
}

/// The SDK's lockfile, as the lockfile of a project named `name` (whose
/// `package.json` has the same dependencies).
fn js_lock(lock: &str, name: &str) -> Option<String> {
    let mut lock: serde_json::Value = serde_json::from_str(lock).ok()?;
    lock["name"] = name.into();
    let root = lock.get_mut("packages")?.get_mut("")?.as_object_mut()?;
    root.insert("name".into(), name.into());
    for field in ["bin", "license", "engines"] {
        root.remove(field);
    }
    serde_json::to_string_pretty(&lock)
        .ok()
        .map(|text| text + "\n")
}

/// The version `sdk/js/package.json` pins `package` to.
fn js_pinned(package_json: &str, package: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(package_json).ok()?;
    json["dependencies"][package].as_str().map(str::to_owned)
}

fn text(path: &str, contents: String) -> File {
    File {
        path: path.into(),
        contents,
        executable: false,
    }
}

fn readme(name: &str, project: &Project) -> String {
    let commands = project.commands.join("\n");
    format!(
        "# {name}\n\n\
         A taskhost task plugin written in {lang}.\n\n\
         ## Build and run it once\n\n\
         ```sh\n{commands}\n```\n\n\
         `taskhost run` runs the component in the same sandbox, and under the same\n\
         limits, as a taskhost node, and prints the run's outcome as JSON.\n\n\
         ## Upload and schedule it\n\n\
         ```sh\n\
         taskhost plugin upload {artifact}     # prints the plugin's id\n\
         taskhost schedule create --name {name}-daily --plugin PLUGIN_ID \\\n    \
         --cron '0 9 * * *' --timezone Europe/London --input {EXAMPLE_INPUT}\n\
         ```\n",
        lang = project.language,
        artifact = project.artifact,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_js_toolchain_is_pinned_as_in_the_sdk() {
        for package in [
            "@bytecodealliance/componentize-js",
            "@bytecodealliance/preview2-shim",
            "esbuild",
        ] {
            let version = js_pinned(JS_PACKAGE, package).expect(package);
            assert!(
                version.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "{package} {version}"
            );
        }
        let project = project_files(Lang::Js, Template::Hello, "demo", "");
        let package = &project.files[0].contents;
        assert!(!package.contains("{{"), "{package}");
        let package: serde_json::Value =
            serde_json::from_str(package).expect("package.json is JSON");
        let lock: serde_json::Value =
            serde_json::from_str(&project.files[1].contents).expect("package-lock.json is JSON");
        assert_eq!(lock["name"], "demo");
        assert_eq!(lock["packages"][""]["name"], "demo");
        assert_eq!(
            lock["packages"][""]["dependencies"], package["dependencies"],
            "npm ci needs the lockfile and package.json to agree"
        );
    }

    #[test]
    fn a_python_project_carries_every_module_of_the_sdk() {
        let sdk =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python/taskhost_sdk");
        let project = project_files(Lang::Python, Template::Hello, "demo", "");
        for entry in std::fs::read_dir(&sdk).expect("sdk/python/taskhost_sdk") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".py") {
                let path = format!("src/taskhost_sdk/{name}");
                assert!(
                    project.files.iter().any(|f| f.path == path),
                    "{path} is not embedded"
                );
            }
        }
    }

    #[test]
    fn every_project_has_a_readme_with_its_commands() {
        let sdk = "taskhost-sdk = { path = \"/sdk\" }";
        let every = [Lang::Rust, Lang::Python, Lang::Js]
            .into_iter()
            .flat_map(|lang| [(lang, Template::Hello), (lang, Template::Workflow)]);
        for (lang, template) in every {
            let project = project_files(lang, template, "demo", sdk);
            let readme = project
                .files
                .iter()
                .find(|f| f.path == "README.md")
                .expect("readme");
            for command in &project.commands {
                assert!(readme.contents.contains(command.as_str()), "{command}");
            }
            assert!(project.files.iter().all(|f| !f.contents.contains("{{")));
        }
    }
}
