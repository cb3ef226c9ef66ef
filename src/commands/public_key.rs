//! `release-capsule public-key`: the PKIX PEM public half of a signing key,
//! what Flux's `spec.verify.secretRef` (as `cosign.pub`) and `verify
//! --public-key` take.

use p256::pkcs8::{EncodePublicKey, LineEnding};

use crate::cli::PublicKeyArgs;
use crate::failure::{Classify, Failure, FailureKind};
use crate::settings::{signing_key_file, Env};

pub fn run(args: &PublicKeyArgs, env: Env) -> Result<(), Failure> {
    let key = signing_key_file(&args.signing_key, env).or_fail(FailureKind::Input)?;
    let pem = key.public.verifying.to_public_key_pem(LineEnding::LF).or_fail(FailureKind::Failed)?;
    print!("{pem}");
    Ok(())
}
