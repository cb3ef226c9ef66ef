//! Step 2 of publish: which date the capsule carries (spec section 5). The
//! image's own build date; else `--created` / `SOURCE_DATE_EPOCH`; else the
//! commit's committer date from a [`CommitDateSource`]; never the clock.

use std::future::Future;
use std::pin::Pin;

use anyhow::anyhow;

use super::debug;
use super::image::ImageFacts;
use crate::core::ident::GitSha;
use crate::core::timestamp::Created;
use crate::failure::Failure;
use crate::settings::PublishSettings;

/// A boxed future, so [`CommitDateSource`] can be used as `&dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the commit's committer date comes from when the image has no usable
/// build date and none was given (the action asks the GitHub API).
pub trait CommitDateSource: Send + Sync {
    fn commit_date<'a>(&'a self, sha: &'a GitSha) -> BoxFuture<'a, anyhow::Result<Option<Created>>>;
}

pub(super) async fn choose_created(
    s: &PublishSettings,
    image: &ImageFacts,
    commit_dates: Option<&dyn CommitDateSource>,
) -> Result<Created, Failure> {
    let c = &s.capsule;
    if let Some(from_image) = image.created {
        if let Some(given) = c.created.filter(|g| *g != from_image) {
            debug(&format!(
                "using the image's build date {from_image}, not the given {given} (--created/SOURCE_DATE_EPOCH): capsules must order as their images do"
            ));
        }
        return Ok(from_image);
    }
    if let Some(given) = c.created {
        debug(&format!("the image has no usable build date; using the given {given}"));
        return Ok(given);
    }
    if let Some(source) = commit_dates {
        let found = source
            .commit_date(&c.sha)
            .await
            .map_err(|e| Failure::network(e.context(format!("looking up the committer date of {}", c.sha))))?;
        if let Some(date) = found {
            debug(&format!("the image has no usable build date; using the committer date of {}: {date}", c.sha));
            return Ok(date);
        }
    }
    Err(Failure::input(anyhow!(
        "image {}@{} has no usable build date (no org.opencontainers.image.created annotation or label, and its config's created is \
         missing or the Unix epoch); pass --created with an RFC 3339 date or set SOURCE_DATE_EPOCH, for example \
         SOURCE_DATE_EPOCH=$(git log -1 --format=%ct {}), or label the image with org.opencontainers.image.created",
        c.image,
        image.digest,
        c.sha
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{CapsuleArgs, OnConflict};
    use crate::core::ident::Digest;
    use crate::failure::FailureKind;
    use crate::settings::{CapsuleSettings, RegistryCredentials};

    fn settings(created: Option<&str>) -> PublishSettings {
        let args = CapsuleArgs {
            sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
            image: Some("ghcr.io/acme/app".into()),
            source_repository: Some("https://github.com/acme/app".into()),
            package_kind: "helm".into(),
            package_path: Some("chart".into()),
            created: created.map(str::to_owned),
            ..Default::default()
        };
        PublishSettings {
            capsule: CapsuleSettings::resolve(&args, &|_| None).unwrap(),
            credentials: RegistryCredentials::default(),
            image_layout: None,
            on_conflict: OnConflict::Fail,
            dry_run: false,
            allow_missing_image: false,
            signing_key: None,
        }
    }

    fn image(created: Option<&str>) -> ImageFacts {
        ImageFacts {
            digest: Digest::of(b"image"),
            created: created.map(|c| c.parse().unwrap()),
            date_lookup: std::time::Duration::ZERO,
            to_push: None,
        }
    }

    struct FromApi(Option<&'static str>);
    impl CommitDateSource for FromApi {
        fn commit_date<'a>(&'a self, _sha: &'a GitSha) -> BoxFuture<'a, anyhow::Result<Option<Created>>> {
            Box::pin(async move { Ok(self.0.map(|d| d.parse().unwrap())) })
        }
    }

    struct Broken;
    impl CommitDateSource for Broken {
        fn commit_date<'a>(&'a self, _sha: &'a GitSha) -> BoxFuture<'a, anyhow::Result<Option<Created>>> {
            Box::pin(async { Err(anyhow!("api down")) })
        }
    }

    async fn pick(given: Option<&str>, from_image: Option<&str>, source: Option<&dyn CommitDateSource>) -> Result<Created, Failure> {
        choose_created(&settings(given), &image(from_image), source).await
    }

    #[tokio::test]
    async fn the_image_date_wins_then_the_given_one_then_the_commit() {
        let api = FromApi(Some("2024-01-01T00:00:00Z"));
        let (image_date, given) = ("2026-01-01T00:00:00Z", "2025-01-01T00:00:00Z");
        assert_eq!(pick(Some(given), Some(image_date), Some(&api)).await.unwrap().to_string(), image_date);
        assert_eq!(pick(Some(given), None, Some(&api)).await.unwrap().to_string(), given);
        assert_eq!(pick(None, None, Some(&api)).await.unwrap().to_string(), "2024-01-01T00:00:00Z");
        // Nothing anywhere: an input error saying what to pass.
        for source in [None, Some(&FromApi(None) as &dyn CommitDateSource)] {
            let e = pick(None, None, source).await.unwrap_err();
            assert_eq!(e.kind, FailureKind::Input);
            assert!(e.to_string().contains("--created") && e.to_string().contains("SOURCE_DATE_EPOCH"), "{e}");
        }
        // A failing lookup is the network's fault, and says what it was doing.
        let e = pick(None, None, Some(&Broken)).await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Network);
        assert!(e.to_string().contains("committer date of 0123456789abcdef0123456789abcdef01234567"), "{e}");
    }
}
