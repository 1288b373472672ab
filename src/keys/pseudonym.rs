//! Pseudonyms: what replaces a real phone number once its personal-data
//! retention has ended. A pseudonym is `h:` and the hex keyed PRF (AES-256,
//! computed by the key store, inside the token for an HSM) of the SHA-256
//! of the number's E.164 text, under the pseudonym key, which lives in the
//! key store and never in the database. The same number always gets the
//! same pseudonym, so call records still group by party.

use sha2::{Digest, Sha256};

use super::{KeyError, KeyStore};
use crate::phone::{E164, pseudonym_of_mac};

/// Id of the pseudonym key in the key store. It is not an epoch key, so
/// the sweep never destroys it: the same number must keep getting the same
/// pseudonym. A new version (`pseudonym-v2`) would start new pseudonyms.
pub const PSEUDONYM_KEY_ID: &str = "pseudonym-v1";

/// The pseudonym of `number` under the pseudonym key (which must exist).
pub fn pseudonym(keys: &dyn KeyStore, number: &E164) -> Result<String, KeyError> {
    let mut h = Sha256::new();
    h.update(b"ansim/pseudonym/v1");
    h.update(number.as_str().as_bytes());
    let input: [u8; 32] = h.finalize().into();
    Ok(pseudonym_of_mac(&keys.prf(PSEUDONYM_KEY_ID, &input)?))
}
