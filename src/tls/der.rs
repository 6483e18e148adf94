//! Just enough X.509 DER reading for cloakroom's own needs: issuer, subject
//! and validity out of `tbsCertificate` (RFC 5280 §4.1), with `yasna`, the
//! DER reader rcgen already builds on (so no crate is added). Nothing is
//! verified: the self-signed renewal ([`super::selfsigned`]) uses it to
//! recognise a certificate it wrote, and the expiry metric
//! ([`super::not_after`]) to report a leaf's notAfter. Anything unreadable
//! is an error the caller turns into "unknown".

use std::time::SystemTime;

use yasna::models::ObjectIdentifier;
use yasna::{ASN1Result, BERReader, BERReaderSeq, Tag};

/// id-at-organizationName (RFC 5280 Appendix A).
const ORGANISATION_OID: [u64; 4] = [2, 5, 4, 10];

/// The fields of a certificate's `tbsCertificate` cloakroom reads.
pub(super) struct TbsFields {
    /// The issuer Name, as DER.
    pub issuer: Vec<u8>,
    /// The subject Name, as DER.
    pub subject: Vec<u8>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
/// TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber,
///   signature, issuer, validity, subject, … } (RFC 5280 §4.1).
pub(super) fn tbs_fields(der: &[u8]) -> ASN1Result<TbsFields> {
    yasna::parse_der(der, |r| {
        r.read_sequence(|cert| {
            let fields = cert.next().read_sequence(|tbs| {
                tbs.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
                tbs.next().read_der()?; // serialNumber
                tbs.next().read_der()?; // signature algorithm
                let issuer = tbs.next().read_der()?;
                let (not_before, not_after) = tbs
                    .next()
                    .read_sequence(|v| Ok((read_time(v.next())?, read_time(v.next())?)))?;
                let subject = tbs.next().read_der()?;
                skip_rest(tbs)?;
                Ok(TbsFields {
                    issuer,
                    subject,
                    not_before,
                    not_after,
                })
            })?;
            skip_rest(cert)?;
            Ok(fields)
        })
    })
}

/// Time ::= CHOICE { utcTime UTCTime, generalTime GeneralizedTime }
fn read_time(r: BERReader<'_, '_>) -> ASN1Result<SystemTime> {
    if r.lookahead_tag()? == yasna::tags::TAG_UTCTIME {
        Ok((*r.read_utctime()?.datetime()).into())
    } else {
        Ok((*r.read_generalized_time()?.datetime()).into())
    }
}

/// Steps over the remaining elements of a sequence (yasna insists that a
/// sequence is read to its end).
fn skip_rest(seq: &mut BERReaderSeq<'_, '_>) -> ASN1Result<()> {
    while seq.read_optional(|r| r.read_der())?.is_some() {}
    Ok(())
}

/// Whether a Name (SEQUENCE OF SET OF { type, value }) holds an
/// organizationName equal to `org`, in any string type.
pub(super) fn has_organisation(name: &[u8], org: &str) -> bool {
    let oid = ObjectIdentifier::from_slice(&ORGANISATION_OID);
    let attributes = yasna::parse_der(name, |r| {
        r.collect_sequence_of(|rdn| {
            rdn.collect_set_of(|atv| {
                atv.read_sequence(|a| Ok((a.next().read_oid()?, a.next().read_tagged_der()?)))
            })
        })
    });
    attributes.is_ok_and(|rdns| {
        rdns.iter()
            .flatten()
            .any(|(t, v)| *t == oid && v.value() == org.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reads_validity_of_a_foreign_certificate() {
        // rcgen's defaults: 1975-01-01 to 4096-01-01 (GeneralizedTime).
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let f = tbs_fields(c.cert.der()).unwrap();
        let year = Duration::from_secs(365 * 24 * 60 * 60);
        assert!(f.not_before < SystemTime::UNIX_EPOCH + 6 * year);
        assert!(f.not_after > SystemTime::UNIX_EPOCH + 2000 * year);
        assert_eq!(f.issuer, f.subject);
        assert!(tbs_fields(b"not DER").is_err());
    }
}
