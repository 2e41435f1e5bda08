use super::*;
use alloy_primitives::{b256, keccak256};
use ark_ec::AffineRepr;

fn fq(hex: &str) -> Fq {
    let hex = hex.trim_start_matches("0x");
    let bytes = alloy_primitives::hex::decode(format!("{hex:0>64}")).unwrap();
    Fq::from_be_bytes_mod_order(&bytes)
}

fn point(x: &str, y: &str) -> G1Affine {
    G1Affine::new_unchecked(fq(x), fq(y))
}

/// gnark-crypto's `hashToG1Vector` (ecc/bn254/hash_vectors_test.go, DST
/// `QUUX-V01-CS02-with-BN254G1_XMD:SHA-256_SVDW_RO_`): what gnark's `HashToG1` must produce, so
/// these pin every convention (L = 48, Z = 1, the sign of c3, sgn0, the order of u0 and u1).
const GNARK_DST_VECTORS: &[u8] = b"QUUX-V01-CS02-with-BN254G1_XMD:SHA-256_SVDW_RO_";

struct Vector {
    msg: String,
    p: (&'static str, &'static str),
    u0: &'static str,
    u1: &'static str,
    q0: (&'static str, &'static str),
    q1: (&'static str, &'static str),
}

fn gnark_vectors() -> Vec<Vector> {
    vec![
        Vector {
            msg: String::new(),
            p: (
                "0xa976ab906170db1f9638d376514dbf8c42aef256a54bbd48521f20749e59e86",
                "0x2925ead66b9e68bfc309b014398640ab55f6619ab59bc1fab2210ad4c4d53d5",
            ),
            u0: "0x2f87b81d9d6ef05ad4d249737498cc27e1bd485dca804487844feb3c67c1a9b5",
            u1: "0x6de2d0d7c0d9c7a5a6c0b74675e7543f5b98186b5dbf831067449000b2b1f8e",
            q0: (
                "0xe449b959abbd0e5ab4c873eaeb1ccd887f1d9ad6cd671fd72cb8d77fb651892",
                "0x29ff1e36867c60374695ee0c298fcbef2af16f8f97ed356fa75e61a797ebb265",
            ),
            q1: (
                "0x19388d9112a306fba595c3a8c63daa8f04205ad9581f7cf105c63c442d7c6511",
                "0x182da356478aa7776d1de8377a18b41e933036d0b71ab03f17114e4e673ad6e4",
            ),
        },
        Vector {
            msg: "abc".into(),
            p: (
                "0x23f717bee89b1003957139f193e6be7da1df5f1374b26a4643b0378b5baf53d1",
                "0x4142f826b71ee574452dbc47e05bc3e1a647478403a7ba38b7b93948f4e151d",
            ),
            u0: "0x11945105b5e3d3b9392b5a2318409cbc28b7246aa47fa30da5739907737799a9",
            u1: "0x1255fc9ad5a6e0fb440916f091229bda611c41be2f2283c3d8f98c596be4c8c9",
            q0: (
                "0x1452c8cc24f8dedc25b24d89b87b64e25488191cecc78464fea84077dd156f8d",
                "0x209c3633505ba956f5ce4d974a868db972b8f1b69d63c218d360996bcec1ad41",
            ),
            q1: (
                "0x4e8357c98524e6208ae2b771e370f0c449e839003988c2e4ce1eaf8d632559f",
                "0x4396ec43dd8ec8f2b4a705090b5892219759da30154c39490fc4d59d51bb817",
            ),
        },
        Vector {
            msg: "abcdef0123456789".into(),
            p: (
                "0x187dbf1c3c89aceceef254d6548d7163fdfa43084145f92c4c91c85c21442d4a",
                "0xabd99d5b0000910b56058f9cc3b0ab0a22d47cf27615f588924fac1e5c63b4d",
            ),
            u0: "0x2f7993a6b43a8dbb37060e790011a888157f456b895b925c3568690685f4983d",
            u1: "0x2677d0532b47a4cead2488845e7df7ebc16c0b8a2cd8a6b7f4ce99f51659794e",
            q0: (
                "0x28d01790d2a1cc4832296774438acd46c2ce162d03099926478cf52319daba8d",
                "0x10227ab2707fd65fb45e87f0a48cfe3556f04113d27b1da9a7ae1709007355e1",
            ),
            q1: (
                "0x7dc256c7aadac1b4e1d23b3b2bbb5e2ffd9c753b9073d8d952ead8f812ce1b3",
                "0x2589008b2e15dcb3d16cdc1fed2634778001b1b28f0ab433f4f5ec6635c55e1e",
            ),
        },
        Vector {
            msg: format!("q128_{}", "q".repeat(128)),
            p: (
                "0xfe2b0743575324fc452d590d217390ad48e5a16cf051bee5c40a2eba233f5c",
                "0x794211e0cc72d3cbbdf8e4e5cd6e7d7e78d101ff94862caae8acbe63e9fdc78",
            ),
            u0: "0x2a50be15282ee276b76db1dab761f75401cdc8bd9fff81fcf4d428db16092a7b",
            u1: "0x23b41953676183c30aca54b5c8bd3ffe3535a6238c39f6b15487a5467d5d20eb",
            q0: (
                "0x1c53b05f2fce15ba0b9100650c0fb46de1fb62f1d0968b69151151bd25dfefa4",
                "0x1fe783faf4bdbd79b717784dc59619106e4acccfe3b5d9750799729d855e7b81",
            ),
            q1: (
                "0x214a4e6e97adda47558f80088460eabd71ed35bc8ceafb99a493dd6f4e2b3f0a",
                "0xfaaeb29cc23f9d09b187a99741613aed84443e7c35736258f57982d336d13bd",
            ),
        },
        Vector {
            msg: format!("a512_{}", "a".repeat(512)),
            p: (
                "0x1b05dc540bd79fd0fea4fbb07de08e94fc2e7bd171fe025c479dc212a2173ce",
                "0x1bf028afc00c0f843d113758968f580640541728cfc6d32ced9779aa613cd9b0",
            ),
            u0: "0x48527470f534978bae262c0f3ba8380d7f560916af58af9ad7dcb6a4238e633",
            u1: "0x19a6d8be25702820b9b11eada2d42f425343889637a01ecd7672fbcf590d9ffe",
            q0: (
                "0x2298ba379768da62495af6bb390ffca9156fde1dc167235b89c6dd008d2f2f3b",
                "0x660564cf6fce5cdea4780f5976dd0932559336fd072b4ddd83ec37f00fc7699",
            ),
            q1: (
                "0x2811dea430f7a1f6c8c941ecdf0e1e725b8ad1801ad15e832654bd8f10b62f16",
                "0x253390ed4fb39e58c30ca43892ab0428684cfb30b9df05fc239ab532eaa02444",
            ),
        },
    ]
}

#[test]
fn hash_to_g1_gnark_matches_gnark_vectors() {
    for v in gnark_vectors() {
        let uniform = expand_message_xmd(v.msg.as_bytes(), GNARK_DST_VECTORS, 96);
        let u0 = Fq::from_be_bytes_mod_order(&uniform[..48]);
        let u1 = Fq::from_be_bytes_mod_order(&uniform[48..]);
        assert_eq!(u0, fq(v.u0), "u0 of {:?}", v.msg);
        assert_eq!(u1, fq(v.u1), "u1 of {:?}", v.msg);
        assert_eq!(map_to_curve_svdw(&u0).into_affine(), point(v.q0.0, v.q0.1));
        assert_eq!(map_to_curve_svdw(&u1).into_affine(), point(v.q1.0, v.q1.1));
        assert_eq!(
            hash_to_g1_gnark(v.msg.as_bytes(), GNARK_DST_VECTORS),
            point(v.p.0, v.p.1),
            "P of {:?}",
            v.msg
        );
    }
}

#[test]
fn svdw_constants_follow_rfc_9380() {
    let k = svdw_constants();
    assert!(!sgn0(&k.c3), "sgn0(c3) must be 0");
    assert_eq!(k.c3.square(), -Fq::from(12u64));
    assert_eq!(k.c2 * Fq::from(2u64), -Fq::one());
    assert_eq!(k.c4 * Fq::from(3u64), -Fq::from(16u64));
    // u = 0 makes tv3 = inv0(1) and must still land on the curve.
    assert!(map_to_curve_svdw(&Fq::zero()).into_affine().is_on_curve());
}

/// Fixed try-and-increment outputs computed by the Python implementation
/// (tests/python/hourglass_crypto.py, plain integers): one digest whose x is used as is, one
/// that needs four increments.
#[test]
fn hash_to_g1_solidity_fixed_vectors() {
    let h = hash_to_g1_solidity(&keccak256(b"cohort-0"));
    assert_eq!(
        h,
        point(
            "0xa97e01ed54ed3f088db9ae70dbcfaa90ff45f3749ee1bcf964ca2520830693",
            "0x9823af33e80ca827860c093ef8660df785098c8adbac15de976e6a89d59ff93"
        )
    );
    let h = hash_to_g1_solidity(&keccak256(b"cohort-1"));
    assert_eq!(
        h,
        point(
            "0x19555f780dddbd9616296345961d2a30d6b08de721dce4c99825acd9e9ae0cd",
            "0x1bcdc0e658d58a5a9812532230fa3c20431002f73ebace8612aa027548cb88f"
        )
    );
    assert_eq!(
        h.x().unwrap() - Fq::from_be_bytes_mod_order(keccak256(b"cohort-1").as_slice()),
        Fq::from(4u64)
    );
}

/// The digest is reduced mod p before the search starts (a digest ≥ p is not refused).
#[test]
fn hash_to_g1_solidity_reduces_large_digests() {
    let max = b256!("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
    let h = hash_to_g1_solidity(&max);
    assert!(h.is_on_curve());
    let start = Fq::from_be_bytes_mod_order(max.as_slice());
    let offset = h.x().unwrap() - start;
    assert!(offset.into_bigint() < BigInt::from(100u64));
}

/// EigenLayer's `BN254.generatorG2()` is `G2Point([G2x1, G2x0], [G2y1, G2y0])`: the imaginary
/// part first. Our 128-byte layout must put the same words in the same order.
#[test]
fn g2_layout_matches_eigenlayer_generator() {
    let key = Bn254Key::from_be_bytes(&[1]).unwrap();
    let bytes = key.public_key().to_bytes();
    let words: Vec<String> = bytes
        .chunks(32)
        .map(|w| bigint_from_be(w.try_into().unwrap()).to_string())
        .collect();
    assert_eq!(
        words,
        [
            "11559732032986387107991004021392285783925812861821192530917403151452391805634",
            "10857046999023057135944570762232829481370756359578518086990519993285655852781",
            "4082367875863433681332203403145435568316851327593401208105741076214120093531",
            "8495653923123431417604973247489272438418190587263600148770280649306958101930",
        ]
    );
    assert_eq!(
        Bn254PublicKey::from_bytes(&bytes).unwrap(),
        *key.public_key()
    );
}

/// Fixed signatures and key for secret 7, computed by the Python implementation (py_ecc).
#[test]
fn fixed_key_and_signatures() {
    let key = Bn254Key::from_be_bytes(&[7]).unwrap();
    assert_eq!(
        alloy_primitives::hex::encode(key.public_key().to_bytes()),
        "2903ba015a9abde26a5d081e84551e63be0fd4516e46ee6d593edeba46362455224bdc5d4327fcf8ed702e01de1c2f1657a253ba75e32a89c390142aaa28b30803c8b7cda6b2dedb7aeeaf5fda464ad17036bea1c4e6f7adbaed1ebe0335e0d81d92fff52a265017eeccb372e37d7a7bd431800eca28dfd82e21e8054114233f"
    );
    let digest = keccak256(b"cohort");
    let solidity = key.sign_solidity(&digest);
    assert_eq!(
        alloy_primitives::hex::encode(solidity),
        "05e0d8a8ac61f95091635e3eca6166eaba25e3fa98f4ee3b067b8b74e9a44e42154ea7e735683227ee472cdc7a321dfe6108f790df8c38e244fef3e1c72d3011"
    );
    let gnark = key.sign_gnark(digest.as_slice());
    assert_eq!(
        alloy_primitives::hex::encode(gnark),
        "0783fa36d31bece81e704309d1eb914b591e548b99f08d4d145f62ec5f0805361c73519df9acf96103ee043d8495f18c01880a1f2f31df36c5f1595e6e3ab18e"
    );
    key.public_key()
        .verify_solidity(&digest, &solidity)
        .unwrap();
    key.public_key()
        .verify_gnark(digest.as_slice(), &gnark)
        .unwrap();
    // Each signature only verifies under its own hash to G1.
    assert_eq!(
        key.public_key().verify_solidity(&digest, &gnark),
        Err(Error::Bn254Verification)
    );
    assert_eq!(
        key.public_key().verify_gnark(digest.as_slice(), &solidity),
        Err(Error::Bn254Verification)
    );
}

#[test]
fn wrong_key_or_digest_fails() {
    let key = Bn254Key::from_be_bytes(&keccak256(b"k1")[1..]).unwrap();
    let other = Bn254Key::from_be_bytes(&keccak256(b"k2")[1..]).unwrap();
    let digest = keccak256(b"m");
    let sig = key.sign_solidity(&digest);
    key.public_key().verify_solidity(&digest, &sig).unwrap();
    assert_eq!(
        other.public_key().verify_solidity(&digest, &sig),
        Err(Error::Bn254Verification)
    );
    assert_eq!(
        key.public_key().verify_solidity(&keccak256(b"n"), &sig),
        Err(Error::Bn254Verification)
    );
}

#[test]
fn secret_key_bounds() {
    assert_eq!(Bn254Key::from_be_bytes(&[]).unwrap_err(), Error::SecretKey);
    assert_eq!(
        Bn254Key::from_be_bytes(&[0; 32]).unwrap_err(),
        Error::SecretKey
    );
    let r = Fr::MODULUS.to_bytes_be();
    assert_eq!(Bn254Key::from_be_bytes(&r).unwrap_err(), Error::SecretKey);
    let mut r_minus_1 = Fr::MODULUS;
    r_minus_1.sub_with_borrow(&BigInt::from(1u64));
    assert!(Bn254Key::from_be_bytes(&r_minus_1.to_bytes_be()).is_ok());
    assert!(matches!(
        Bn254Key::from_be_bytes(&[1; 33]),
        Err(Error::Length { got: 33, .. })
    ));
}

#[test]
fn g1_parsing_refuses_bad_points() {
    let key = Bn254Key::from_be_bytes(&[9]).unwrap();
    let sig = key.sign_solidity(&keccak256(b"x"));
    let what = "sig";
    assert!(g1_from_bytes(&sig, what).is_ok());
    assert!(matches!(
        g1_from_bytes(&sig[..63], what),
        Err(Error::Length {
            expected: 64,
            got: 63,
            ..
        })
    ));
    assert_eq!(g1_from_bytes(&[0; 64], what), Err(Error::Infinity(what)));
    let mut off = sig;
    off[63] ^= 1;
    assert_eq!(g1_from_bytes(&off, what), Err(Error::NotOnCurve(what)));
    let mut big = sig;
    big[..32].copy_from_slice(&Fq::MODULUS.to_bytes_be());
    assert_eq!(g1_from_bytes(&big, what), Err(Error::FieldElement(what)));
    // A public key verifying a malformed signature reports the parse error, not a panic.
    assert_eq!(
        key.public_key().verify_solidity(&keccak256(b"x"), &[0; 64]),
        Err(Error::Infinity("BN254 signature"))
    );
}

#[test]
fn g2_parsing_refuses_bad_points() {
    const WHAT: &str = "BN254 G2 public key";
    let good = Bn254Key::from_be_bytes(&[5])
        .unwrap()
        .public_key()
        .to_bytes();
    assert!(Bn254PublicKey::from_bytes(&good).is_ok());
    assert!(matches!(
        Bn254PublicKey::from_bytes(&good[..127]),
        Err(Error::Length { expected: 128, .. })
    ));
    assert_eq!(
        Bn254PublicKey::from_bytes(&[0; 128]),
        Err(Error::Infinity(WHAT))
    );
    let mut off = good;
    off[127] ^= 1;
    assert_eq!(
        Bn254PublicKey::from_bytes(&off),
        Err(Error::NotOnCurve(WHAT))
    );
    let mut big = good;
    big[32..64].copy_from_slice(&Fq::MODULUS.to_bytes_be());
    assert_eq!(
        Bn254PublicKey::from_bytes(&big),
        Err(Error::FieldElement(WHAT))
    );
    // Swapping c0 and c1 (the other common convention) gives a point off the twist.
    let mut swapped = good;
    swapped[..32].copy_from_slice(&good[32..64]);
    swapped[32..64].copy_from_slice(&good[..32]);
    assert!(Bn254PublicKey::from_bytes(&swapped).is_err());
    // A point on the twist but outside the prime-order subgroup (G2's cofactor is large, so
    // the first x with a square right-hand side almost surely gives one).
    let mut x = Fq2::new(Fq::from(1u64), Fq::from(1u64));
    let point = loop {
        if let Some(p) = G2Affine::get_point_from_x_unchecked(x, true) {
            break p;
        }
        x += Fq2::one();
    };
    assert!(point.is_on_curve() && !point.is_in_correct_subgroup_assuming_on_curve());
    let encoded = Bn254PublicKey { point }.to_bytes();
    assert_eq!(
        Bn254PublicKey::from_bytes(&encoded),
        Err(Error::NotInSubgroup(WHAT))
    );
}

/// RFC 9380 §5.3.3: a DST over 255 bytes is replaced by its hash, not truncated or refused.
#[test]
fn oversize_dst_is_hashed() {
    let long = [b'd'; 300];
    let hashed = Sha256::new()
        .chain_update(b"H2C-OVERSIZE-DST-")
        .chain_update(long)
        .finalize();
    assert_eq!(
        expand_message_xmd(b"m", &long, 96),
        expand_message_xmd(b"m", &hashed, 96)
    );
}
