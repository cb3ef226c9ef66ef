use std::collections::HashMap;

use super::*;

const EVENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/github-api/events");
const MERGE_SHA: &str = "9f2c1e0d8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d";

fn payload(name: &str) -> String {
    std::fs::read_to_string(format!("{EVENTS}/{name}.json")).expect("shared event payloads beside the checkout")
}

/// The environment the runner gives the container for `event`, with the
/// action's inputs as the runner names them. Unset inputs are "" as on a real runner.
fn runner_env(event: &str, inputs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("GITHUB_EVENT_NAME", event),
        ("GITHUB_SHA", MERGE_SHA),
        ("GITHUB_REPOSITORY", "codertocat/hello-world"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_API_URL", "https://api.github.com"),
        ("GITHUB_RUN_ID", "1234"),
        ("GITHUB_WORKSPACE", "/github/workspace"),
        ("GITHUB_ACTOR", "octocat"),
        ("GITHUB_OUTPUT", "/github/file_commands/set_output_1"),
        ("GITHUB_STEP_SUMMARY", "/github/file_commands/step_summary_1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for name in [
        "image",
        "capsule-repository",
        "package-path",
        "package-kind",
        "sha",
        "image-layout",
        "sbom",
        "provenance",
        "registry-username",
        "registry-password",
        "github-token",
        "push",
        "on-conflict",
        "check-name",
        "status-context",
        "report",
    ] {
        env.insert(input_var(name), String::new());
    }
    env.insert("INPUT_IMAGE".into(), "ghcr.io/codertocat/hello-world".into());
    env.insert("INPUT_PACKAGE-PATH".into(), "charts/hello".into());
    env.insert("INPUT_GITHUB-TOKEN".into(), "ghs_secret".into());
    for (k, v) in inputs {
        env.insert(input_var(k), (*v).to_owned());
    }
    env
}

/// The error as main prints it: the message, then its causes.
fn chain(e: ActionSettingsError) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

fn resolve_with(env: &HashMap<String, String>, payload_text: Option<&str>) -> Result<ActionSettings, ActionSettingsError> {
    let get = |k: &str| env.get(k).cloned();
    resolve(&get, payload_text)
}

fn event(name: &str, inputs: &[(&str, &str)]) -> Result<ActionSettings, ActionSettingsError> {
    resolve_with(&runner_env(name, inputs), Some(&payload(name)))
}

#[test]
fn input_names_follow_the_runner() {
    assert_eq!(input_var("package-path"), "INPUT_PACKAGE-PATH");
    assert_eq!(input_var("capsule-repository"), "INPUT_CAPSULE-REPOSITORY");
    assert_eq!(input_var("My input"), "INPUT_MY_INPUT");
    let env = |k: &str| (k == "INPUT_PUSH").then(|| "  ".to_owned());
    assert_eq!(input(&env, "push"), None, "an empty input is unset");
}

#[test]
fn push_uses_github_sha_and_defaults() {
    let mut env = runner_env("push", &[]);
    let text = payload("push");
    let after = serde_json::from_str::<Value>(&text).unwrap()["after"].as_str().unwrap().to_owned();
    env.insert("GITHUB_SHA".into(), after.clone());
    let s = resolve_with(&env, Some(&text)).unwrap();
    assert_eq!(s.sha().as_str(), after);
    assert!(s.push());
    assert_eq!(s.publish.capsule.capsule.to_string(), "ghcr.io/codertocat/hello-world-release-capsule");
    assert_eq!(s.publish.capsule.package_kind, PackageKind::Helm);
    assert_eq!(s.publish.capsule.package_path, Path::new("/github/workspace/charts/hello"));
    assert_eq!(s.package_repo_path, "charts/hello");
    assert_eq!(s.publish.capsule.source.as_str(), "https://github.com/codertocat/hello-world");
    assert_eq!(s.publish.on_conflict, OnConflict::Fail);
    assert_eq!(s.github.report, ReportTo { check: true, status: true });
    assert_eq!(s.github.check_name, "release-capsule");
    assert_eq!(s.github.status_context, "release-capsule");
    assert_eq!(s.github.run_url.as_deref(), Some("https://github.com/codertocat/hello-world/actions/runs/1234"));
    assert_eq!((s.github.owner.as_str(), s.github.repo.as_str()), ("codertocat", "hello-world"));
    // The registry logs in as the actor with the job's token.
    assert_eq!(s.publish.credentials.username.as_deref(), Some("octocat"));
    assert_eq!(s.publish.credentials.password.as_deref(), Some("ghs_secret"));
    // head_commit.timestamp of the real payload, "2019-05-15T15:19:25Z" in the fixture.
    assert_eq!(s.payload_commit_date.unwrap().to_string(), "2019-05-15T15:19:25Z");
    assert!(!s.fork && !s.debug);
    // The push payload's head commit is not the merge sha: no date from it.
    let s = event("push", &[]).unwrap();
    assert_eq!(s.sha().as_str(), MERGE_SHA);
    assert_eq!(s.payload_commit_date, None);
}

#[test]
fn pull_request_uses_the_head_sha_not_the_merge_commit() {
    for name in ["pull_request", "pull_request_target"] {
        let mut env = runner_env(name, &[]);
        env.insert("GITHUB_EVENT_NAME".into(), name.into());
        let s = resolve_with(&env, Some(&payload("pull_request"))).unwrap();
        assert_eq!(s.sha().as_str(), "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "{name}");
        assert_ne!(s.sha().as_str(), MERGE_SHA);
        assert!(!s.push(), "pull requests are a dry run by default");
        assert!(!s.fork, "the fixture's head repo is the base repo");
    }
    let s = event("pull_request", &[("push", "true")]).unwrap();
    assert!(s.push(), "an explicit push input wins");
}

#[test]
fn fork_pull_request_is_recognized() {
    let mut p: Value = serde_json::from_str(&payload("pull_request")).unwrap();
    p["pull_request"]["head"]["repo"]["full_name"] = "someone/hello-world".into();
    let s = resolve_with(&runner_env("pull_request", &[]), Some(&p.to_string())).unwrap();
    assert!(s.fork);
}

#[test]
fn workflow_dispatch_republishes_the_sha_input() {
    let old = "0123456789abcdef0123456789abcdef01234567";
    let s = event("workflow_dispatch", &[("sha", old)]).unwrap();
    assert_eq!(s.sha().as_str(), old);
    assert!(s.push());
    let s = event("workflow_dispatch", &[]).unwrap();
    assert_eq!(s.sha().as_str(), MERGE_SHA);
}

#[test]
fn other_events_and_missing_payloads() {
    let mut env = runner_env("schedule", &[]);
    env.insert("GITHUB_EVENT_NAME".into(), "schedule".into());
    assert_eq!(resolve_with(&env, None).unwrap().sha().as_str(), MERGE_SHA);
    let e = chain(resolve_with(&runner_env("pull_request", &[]), None).unwrap_err());
    assert_eq!(e, "event payload (GITHUB_EVENT_PATH) of the pull_request event: has no pull_request.head.sha");
    let e = chain(resolve_with(&runner_env("pull_request", &[]), Some("{not json")).unwrap_err());
    assert!(e.contains("is not JSON"), "{e}");
}

#[test]
fn bad_or_missing_sha_is_a_clear_error() {
    let e = chain(event("workflow_dispatch", &[("sha", "abc1234")]).unwrap_err());
    assert!(e.starts_with("input sha: invalid commit sha \"abc1234\": expected 40 lowercase hex"), "{e}");
    let mut env = runner_env("push", &[]);
    env.remove("GITHUB_SHA");
    let e = chain(resolve_with(&env, Some(&payload("push"))).unwrap_err());
    assert!(e.starts_with("GITHUB_SHA: is not set"), "{e}");
    env.insert("GITHUB_SHA".into(), "0".repeat(40));
    let e = chain(resolve_with(&env, Some(&payload("push"))).unwrap_err());
    assert!(e.contains("deleted the branch"), "{e}");
    let mut p: Value = serde_json::from_str(&payload("pull_request")).unwrap();
    p["pull_request"]["head"]["sha"] = "HEAD".into();
    let e = chain(resolve_with(&runner_env("pull_request", &[]), Some(&p.to_string())).unwrap_err());
    assert!(e.contains("pull_request.head.sha: invalid commit sha \"HEAD\""), "{e}");
}

#[test]
fn input_errors_name_the_input() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("image", "")], "input image: is required"),
        (&[("image", "ghcr.io/Acme/App")], "input image: invalid repository"),
        (&[("package-path", "")], "input package-path: is required"),
        (&[("package-path", "../elsewhere")], "input package-path: ../elsewhere leaves the workspace"),
        (&[("package-path", "/tmp/chart")], "input package-path: /tmp/chart is outside the workspace"),
        (&[("package-kind", "kustomise")], "input package-kind: \"kustomise\" is not one of helm, kustomize"),
        (&[("push", "yes")], "input push: \"yes\" is not one of true, false"),
        (&[("on-conflict", "replace")], "input on-conflict: \"replace\" is not one of fail, overwrite"),
        (&[("report", "all")], "input report: \"all\" is not one of check, status, both, none"),
        (&[("capsule-repository", "ghcr.io/a/b:latest")], "input capsule-repository: invalid repository"),
    ];
    for (inputs, expected) in cases {
        let e = chain(event("push", inputs).unwrap_err());
        assert!(e.starts_with(expected), "{inputs:?}: {e}");
        assert_eq!(e.matches(expected.split(": ").nth(1).unwrap_or(expected)).count(), 1, "said twice: {e}");
    }
}

#[test]
fn inputs_override_defaults() {
    let s = event(
        "push",
        &[
            ("capsule-repository", "ghcr.io/codertocat/capsules"),
            ("package-path", "/github/workspace/./deploy/../deploy/kustomize/"),
            ("package-kind", "kustomize"),
            ("image-layout", "out/image.tar"),
            ("sbom", "sbom.spdx.json"),
            ("push", "False"),
            ("on-conflict", "overwrite"),
            ("check-name", "capsule"),
            ("status-context", "ci/capsule"),
            ("report", "status"),
            ("registry-username", "bot"),
            ("registry-password", "pat_registry"),
        ],
    )
    .unwrap();
    assert_eq!(s.publish.capsule.capsule.to_string(), "ghcr.io/codertocat/capsules");
    assert_eq!(s.package_repo_path, "deploy/kustomize");
    assert_eq!(s.publish.capsule.package_source_path, "deploy/kustomize");
    assert_eq!(s.publish.capsule.package_kind, PackageKind::Kustomize);
    assert_eq!(s.publish.image_layout.as_deref(), Some(Path::new("/github/workspace/out/image.tar")));
    assert_eq!(s.publish.capsule.sbom.as_deref(), Some(Path::new("/github/workspace/sbom.spdx.json")));
    assert!(!s.push());
    assert_eq!(s.publish.on_conflict, OnConflict::Overwrite);
    assert_eq!(s.github.report, ReportTo { check: false, status: true });
    assert_eq!((s.github.check_name.as_str(), s.github.status_context.as_str()), ("capsule", "ci/capsule"));
    assert_eq!(s.publish.credentials.username.as_deref(), Some("bot"));
    assert_eq!(s.publish.credentials.password.as_deref(), Some("pat_registry"));
}

#[test]
fn run_facts_from_the_environment() {
    let mut env = runner_env("push", &[]);
    env.insert("GITHUB_API_URL".into(), "https://ghe.example.com/api/v3/".into());
    env.insert("GITHUB_SERVER_URL".into(), "https://ghe.example.com".into());
    env.insert("RUNNER_DEBUG".into(), "1".into());
    env.insert("INPUT_GITHUB-TOKEN".into(), String::new());
    env.insert("GITHUB_TOKEN".into(), "ghs_from_env".into());
    let s = resolve_with(&env, Some(&payload("push"))).unwrap();
    assert_eq!(s.github.api_url, "https://ghe.example.com/api/v3");
    assert_eq!(s.publish.capsule.source.as_str(), "https://ghe.example.com/codertocat/hello-world");
    assert!(s.debug);
    assert_eq!(s.github.token.as_ref().map(Token::expose), Some("ghs_from_env"));
    env.insert("GITHUB_API_URL".into(), "api.github.com".into());
    let e = chain(resolve_with(&env, Some(&payload("push"))).unwrap_err());
    assert!(e.starts_with("GITHUB_API_URL: \"api.github.com\" is not an http(s) URL"), "{e}");
    env.remove("GITHUB_REPOSITORY");
    let e = chain(resolve_with(&env, Some(&payload("push"))).unwrap_err());
    assert!(e.starts_with("GITHUB_REPOSITORY: is not set"), "{e}");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let mut env = runner_env("push", &[("registry-password", "pat_registry_value")]);
    env.insert("GITHUB_TOKEN".into(), "ghs_env_token".into());
    let s = resolve_with(&env, Some(&payload("push"))).unwrap();
    let shown = format!("{s:?}");
    for secret in ["pat_registry_value", "ghs_secret", "ghs_env_token"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    let get = |k: &str| env.get(k).cloned();
    assert_eq!(secrets(&get), vec!["pat_registry_value", "ghs_secret", "ghs_env_token"]);
}

fn with_ref(mut env: HashMap<String, String>, git_ref: &str) -> HashMap<String, String> {
    env.insert("GITHUB_REF".into(), git_ref.into());
    env
}

const GITOPS: [(&str, &str); 4] = [
    ("gitops-repository", "code-dot-org/k8s-gitops"),
    ("gitops-token", "github_pat_x"),
    ("freight-path", "warehouses/codeai/freight"),
    ("gate-path", "warehouses/codeai/legacy-gitflow"),
];

#[test]
fn a_push_to_a_gate_branch_plans_freight_and_a_gate_record_at_the_push_time() {
    let env = with_ref(runner_env("push", &GITOPS), "refs/heads/production");
    let s = resolve_with(&env, Some(&payload("push"))).unwrap();
    let plan = s.gitops.expect("a plan");
    assert_eq!(plan.target.repository.to_string(), "code-dot-org/k8s-gitops");
    assert_eq!(plan.target.branch.as_str(), "main");
    assert_eq!(plan.target.token.expose(), "github_pat_x");
    assert_eq!(plan.freight.unwrap().as_str(), "warehouses/codeai/freight");
    let gate = plan.gate.unwrap();
    assert_eq!(gate.branch.as_str(), "production");
    // push.json: "pushed_at": 1557933657
    assert_eq!(gate.merged_at.unwrap().to_string(), "2019-05-15T15:20:57Z");
    assert_eq!(plan.target.run_url.as_deref(), Some("https://github.com/codertocat/hello-world/actions/runs/1234"));

    // Not a gate branch: freight only, and the log says why.
    let env = with_ref(runner_env("push", &GITOPS), "refs/heads/main");
    let s = resolve_with(&env, Some(&payload("push"))).unwrap();
    assert!(s.gitops.as_ref().unwrap().gate.is_none());
    assert!(s.gitops_notes[0].contains("only a push to one of staging, test, levelbuilder, production"), "{:?}", s.gitops_notes);
    let env = with_ref(runner_env("push", &[GITOPS[0], GITOPS[1], GITOPS[3], ("gate-branches", "main, release/1")]), "refs/heads/main");
    assert!(resolve_with(&env, Some(&payload("push"))).unwrap().gitops.unwrap().gate.is_some());
}

#[test]
fn pull_requests_and_dry_runs_write_nothing_and_need_no_token() {
    let inputs = [GITOPS[0], ("gitops-token", ""), GITOPS[2], GITOPS[3]];
    let s = event("pull_request", &inputs).unwrap();
    assert!(s.gitops.is_none());
    assert!(s.gitops_notes.iter().any(|n| n.starts_with("freight-path: nothing is exported")), "{:?}", s.gitops_notes);
    let env = with_ref(runner_env("push", &[GITOPS[0], GITOPS[1], GITOPS[2], GITOPS[3], ("push", "false")]), "refs/heads/production");
    let s = resolve_with(&env, Some(&payload("push"))).unwrap();
    assert!(s.gitops.is_none(), "a dry run records nothing");
}

#[test]
fn gitops_inputs_are_checked_and_the_token_is_required_only_for_another_repository() {
    let err = |inputs: &[(&str, &str)]| chain(resolve_with(&runner_env("push", inputs), Some(&payload("push"))).unwrap_err());
    let message = err(&[GITOPS[0], ("gitops-token", ""), GITOPS[2]]);
    assert!(message.starts_with("input gitops-token: is required: GITHUB_TOKEN cannot write to another repository"), "{message}");
    let message = err(&[GITOPS[0], GITOPS[1], ("freight-path", "../x")]);
    assert!(message.contains("input freight-path") && message.contains("`..` leaves the repository"), "{message}");
    let message = err(&[GITOPS[0]]);
    assert!(message.contains("neither freight-path nor gate-path"), "{message}");
    let message = err(&[GITOPS[2]]);
    assert!(message.starts_with("input gitops-repository: is required"), "{message}");
    // The workflow's own repository: GITHUB_TOKEN (github-token) may write there.
    let env = runner_env("push", &[("gitops-repository", "codertocat/hello-world"), GITOPS[2]]);
    let s = resolve_with(&env, Some(&payload("push"))).unwrap();
    assert_eq!(s.gitops.unwrap().target.token.expose(), "ghs_secret");
}
