use super::*;
use crate::cli::{RegistryAuthArgs, VerifyArgs};

fn args() -> CapsuleArgs {
    CapsuleArgs {
        sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
        image: Some("ghcr.io/acme/app".into()),
        package_kind: "helm".into(),
        package_path: Some("charts/app".into()),
        ..Default::default()
    }
}

#[test]
fn source_comes_from_github_env_when_not_given() {
    let env = |k: &str| match k {
        "GITHUB_REPOSITORY" => Some("acme/app".to_owned()),
        "SOURCE_DATE_EPOCH" => Some("1700000000".to_owned()),
        _ => None,
    };
    let s = CapsuleSettings::resolve(&args(), &env).unwrap();
    assert_eq!(s.source.as_str(), "https://github.com/acme/app");
    assert_eq!(s.capsule.to_string(), "ghcr.io/acme/app-release-capsule");
    assert_eq!(s.created.unwrap().to_string(), "2023-11-14T22:13:20Z");
}

#[test]
fn errors_name_the_flag() {
    let none = |_: &str| None;
    let mut a = args();
    a.sha = Some("ABC".into());
    // As main prints it: the message, then its causes.
    let e = format!("{:#}", anyhow::Error::new(CapsuleSettings::resolve(&a, &none).unwrap_err()));
    assert!(e.starts_with("--sha: invalid commit sha \"ABC\""), "{e}");
    assert_eq!(e.matches("invalid commit sha").count(), 1, "{e}");
    let e = CapsuleSettings::resolve(&args(), &none).unwrap_err().to_string();
    assert!(e.starts_with("--source-repository is required"), "{e}");
}

fn verify_args(image: &str) -> VerifyArgs {
    VerifyArgs {
        capsule: "127.0.0.1:5000/acme/app-release-capsule@sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".into(),
        image: image.into(),
        image_digest: None,
        output: None,
        public_key: None,
        auth: RegistryAuthArgs { registry_username: None, registry_password: Some("s3cret".into()), registry_login_host: vec![] },
        json: false,
    }
}

#[test]
fn image_must_name_a_release_tag() {
    let env = |k: &str| (k == "REGISTRY_USERNAME").then(|| "bot".to_owned());
    let s = VerifySettings::resolve(&verify_args("127.0.0.1:5000/acme/app:git-0123456789abcdef0123456789abcdef01234567"), &env).unwrap();
    assert_eq!(s.image.tag.as_deref(), Some("git-0123456789abcdef0123456789abcdef01234567"));
    assert_eq!(s.credentials.username.as_deref(), Some("bot"));
    assert_eq!(s.credentials.hosts, ["127.0.0.1:5000"], "the login goes to the capsule's registry");
    assert!(!format!("{s:?}").contains("s3cret"));
    for bad in ["127.0.0.1:5000/acme/app:latest", "127.0.0.1:5000/acme/app:git-abc", "127.0.0.1:5000/acme/app"] {
        let e = VerifySettings::resolve(&verify_args(bad), &env).unwrap_err().to_string();
        assert!(e.starts_with("--image"), "{e}");
    }
}

#[test]
fn a_login_names_its_registries() {
    let mut args = verify_args("127.0.0.1:5000/acme/app:git-0123456789abcdef0123456789abcdef01234567");
    let from_env = |k: &str| (k == "REGISTRY_LOGIN_HOST").then(|| "ghcr.io, 127.0.0.1:5001".to_owned());
    assert_eq!(VerifySettings::resolve(&args, &from_env).unwrap().credentials.hosts, ["ghcr.io", "127.0.0.1:5001"]);
    args.auth.registry_login_host = vec!["quay.io".into()];
    assert_eq!(VerifySettings::resolve(&args, &from_env).unwrap().credentials.hosts, ["quay.io"], "the flag wins");
    args.auth.registry_login_host = vec!["https://ghcr.io/v2/".into()];
    let e = VerifySettings::resolve(&args, &|_| None).unwrap_err().to_string();
    assert!(e.starts_with("--registry-login-host https://ghcr.io/v2/: give a registry host"), "{e}");
}
