//! Published test vectors: RFC 4231 (HMAC-SHA256), RFC 8785 (JCS) and the JCS reference
//! implementation's test data, plus cross-checks of the canonicaliser against Node's own
//! `Number::toString`, `JSON.stringify` and `Array.prototype.sort` (the ECMAScript
//! behaviour RFC 8785 is defined by).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use common::{Rng, hex, node, unhex};
use kubesafe_signing::jcs::{self, Canonicalizer, format_f64, utf16_cmp};
use kubesafe_signing::json::{Limits, parse};
use kubesafe_signing::legacy::LegacyVerifier;
use kubesafe_signing::{LegacySecret, MalformedError, Rejection};
use serde_json::{Value, json};

// ---------------------------------------------------------------- RFC 4231 §4.2–§4.8

struct HmacCase {
    case: u32,
    key: Vec<u8>,
    data: Vec<u8>,
    /// HMAC-SHA-256 as the RFC prints it (test case 5: only the first 128 bits).
    mac: &'static str,
}

fn rfc4231_cases() -> Vec<HmacCase> {
    vec![
        HmacCase {
            case: 1,
            key: vec![0x0b; 20],
            data: b"Hi There".to_vec(),
            mac: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        },
        HmacCase {
            case: 2,
            key: b"Jefe".to_vec(),
            data: b"what do ya want for nothing?".to_vec(),
            mac: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        },
        HmacCase {
            case: 3,
            key: vec![0xaa; 20],
            data: vec![0xdd; 50],
            mac: "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        },
        HmacCase {
            case: 4,
            key: (0x01..=0x19).collect(),
            data: vec![0xcd; 50],
            mac: "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        },
        HmacCase {
            case: 5,
            key: vec![0x0c; 20],
            data: b"Test With Truncation".to_vec(),
            mac: "a3b6167473100ee06e0c796c2955552b",
        },
        HmacCase {
            case: 6,
            key: vec![0xaa; 131],
            data: b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            mac: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        },
        HmacCase {
            case: 7,
            key: vec![0xaa; 131],
            data: b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
            mac: "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        },
    ]
}

#[test]
fn rfc4231_hmac_sha256_vectors() {
    for c in rfc4231_cases() {
        // The RFC's keys are 4–131 bytes: the legacy mode's explicit short-key opt-in.
        let v = LegacyVerifier::new("rfc4231", LegacySecret::new_allow_short(c.key).unwrap());
        let ours = v.sign_hex(&c.data);
        if c.mac.len() == 64 {
            assert_eq!(ours, c.mac, "test case {}", c.case);
            v.verify_mac(&c.data, c.mac)
                .unwrap_or_else(|e| panic!("test case {}: {e}", c.case));
            // One wrong bit in the data is refused.
            let mut data = c.data.clone();
            data[0] ^= 1;
            assert!(matches!(
                v.verify_mac(&data, c.mac),
                Err(Rejection::BadMac { .. })
            ));
        } else {
            // Test case 5 publishes a tag truncated to 128 bits. Our MAC starts with it,
            // but a truncated tag is never accepted as a signature: it is refused as
            // malformed without being compared.
            assert_eq!(c.case, 5);
            assert_eq!(&ours[..32], c.mac);
            assert!(matches!(
                v.verify_mac(&c.data, c.mac),
                Err(Rejection::Malformed(MalformedError::InvalidField {
                    field: "signature",
                    ..
                }))
            ));
        }
    }
}

// ---------------------------------------------------------------- RFC 8785

/// RFC 8785 §3.2.2: the input, exactly as printed.
const RFC8785_3_2_2_INPUT: &str = r#"{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;

/// RFC 8785 §3.2.4: the UTF-8 bytes of its canonical form.
const RFC8785_3_2_4_HEX: &str = "
7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72
75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a
5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31
65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37
5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30
30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d";

#[test]
fn rfc8785_section_3_2_2_sample_gives_the_section_3_2_4_bytes() {
    let value = parse(RFC8785_3_2_2_INPUT.as_bytes(), &Limits::default()).unwrap();
    let canonical = Canonicalizer::rfc8785().to_vec(&value).unwrap();
    assert_eq!(hex(&canonical), hex(&unhex(RFC8785_3_2_4_HEX)));
    // §3.2.3's display of the same output.
    assert_eq!(
        String::from_utf8(canonical).unwrap(),
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
    // The strict (envelope) policy refuses 1E30, an integer far beyond 2^53.
    let err = Canonicalizer::strict().to_vec(&value).unwrap_err();
    assert!(
        matches!(err, jcs::JcsError::UnsafeNumber { ref path, .. } if path == "/numbers/1"),
        "{err}"
    );
}

#[test]
fn rfc8785_section_3_2_3_sorts_by_utf16_code_units() {
    let input = r#"{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"#;
    let value = parse(input.as_bytes(), &Limits::default()).unwrap();
    let canonical = Canonicalizer::strict().to_string(&value).unwrap();
    assert_eq!(
        canonical,
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
         \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
         \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
    );
}

/// RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
const APPENDIX_B: &[(u64, &str)] = &[
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7fefffffffffffff, "1.7976931348623157e+308"),
    (0xffefffffffffffff, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xc340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44b52d02c7e14af5, "9.999999999999997e+22"),
    (0x44b52d02c7e14af6, "1e+23"),
    (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
    (0x444b1ae4d6e2ef4e, "999999999999999700000"),
    (0x444b1ae4d6e2ef4f, "999999999999999900000"),
    (0x444b1ae4d6e2ef50, "1e+21"),
    (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
    (0x3eb0c6f7a0b5ed8d, "0.000001"),
    (0x41b3de4355555553, "333333333.3333332"),
    (0x41b3de4355555554, "333333333.33333325"),
    (0x41b3de4355555555, "333333333.3333333"),
    (0x41b3de4355555556, "333333333.3333334"),
    (0x41b3de4355555557, "333333333.33333343"),
    (0xbecbf647612f3696, "-0.0000033333333333333333"),
    (0x43143ff3c1cb0959, "1424953923781206.2"),
];

#[test]
fn rfc8785_appendix_b_numbers() {
    for &(bits, expected) in APPENDIX_B {
        let x = f64::from_bits(bits);
        assert_eq!(format_f64(x), expected, "{bits:016x}");
        // The same through the value canonicaliser (RFC mode).
        let v = Value::Number(serde_json::Number::from_f64(x).unwrap());
        assert_eq!(
            Canonicalizer::rfc8785().to_string(&v).unwrap(),
            expected,
            "{bits:016x}"
        );
        // And the text reads back as the same double (`-0` becomes `0`).
        let back: f64 = expected.parse().unwrap();
        assert_eq!(back, x, "{bits:016x}");
    }
    // NaN and Infinity (0x7fffffffffffffff, 0x7ff0000000000000) have no JSON form: they
    // cannot be put in a Value, and the parser refuses their spellings.
    for bits in [0x7fffffffffffffff_u64, 0x7ff0000000000000] {
        assert!(serde_json::Number::from_f64(f64::from_bits(bits)).is_none());
    }
    for text in ["NaN", "Infinity", "-Infinity", "1e400"] {
        assert!(
            parse(text.as_bytes(), &Limits::default()).is_err(),
            "{text}"
        );
    }
}

/// The JCS reference implementation's `testdata` (input → output), two of its files.
#[test]
fn jcs_reference_testdata() {
    let cases = [
        (
            // structures.json: 56.0 → 56, empty containers, "\n" as a member name.
            "{\n  \"1\": {\"f\": {\"f\": \"hi\",\"F\": 5} ,\"\\n\": 56.0},\n  \"10\": { },\n  \"\": \"empty\",\n  \"a\": { },\n  \"111\": [ { } ],\n  \"A\": { }\n}",
            "{\"\":\"empty\",\"1\":{\"\\n\":56,\"f\":{\"F\":5,\"f\":\"hi\"}},\"10\":{},\"111\":[{}],\"A\":{},\"a\":{}}",
        ),
        (
            // weird.json: U+1F602 sorts before U+FB33; U+007F and "</script>" are literal.
            "{\n  \"\\u20ac\": \"Euro Sign\",\n  \"1\": \"One\",\n  \"\\u0080\": \"Control\\u007f\",\n  \"\\ud83d\\ude02\": \"Smiley\",\n  \"\\u00f6\": \"Latin Small Letter O With Diaeresis\",\n  \"\\ufb33\": \"Hebrew Letter Dalet With Dagesh\",\n  \"</script>\": \"Browser Challenge\"\n}\n",
            "{\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f602}\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}",
        ),
    ];
    for (input, output) in cases {
        let value = parse(input.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(Canonicalizer::strict().to_string(&value).unwrap(), output);
    }
}

// ---------------------------------------------------------------- against Node

/// 20 000 doubles (random bit patterns, random short decimals, powers of ten, boundaries):
/// our formatter must print exactly what V8's `String(x)` prints.
#[test]
fn number_formatting_matches_node() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut xs: Vec<f64> = Vec::new();
    while xs.len() < 12_000 {
        let x = f64::from_bits(rng.next_u64());
        if x.is_finite() {
            xs.push(x);
        }
    }
    for _ in 0..6_000 {
        // Short decimals such as 12.5, 0.07, 3e-9: where shortest-digit bugs show.
        let mantissa = rng.below(1_000_000) as f64;
        let exp = rng.below(60) as i32 - 30;
        xs.push(mantissa * 10f64.powi(exp));
    }
    for e in -330..=310 {
        xs.push(10f64.powi(e));
        xs.push(-(10f64.powi(e)) * 1.5);
    }
    for &(bits, _) in APPENDIX_B {
        xs.push(f64::from_bits(bits));
    }
    xs.retain(|x| x.is_finite());
    let input: String = xs
        .iter()
        .map(|x| format!("{:016x}\n", x.to_bits()))
        .collect();
    let script = r#"
        const lines = require('fs').readFileSync(0, 'utf8').trim().split('\n');
        const view = new DataView(new ArrayBuffer(8));
        const out = lines.map(h => { view.setBigUint64(0, BigInt('0x' + h)); return String(view.getFloat64(0)); });
        process.stdout.write(out.join('\n'));
    "#;
    let Some(out) = node(script, input.as_bytes()) else {
        return;
    };
    let theirs: Vec<&str> = out.split('\n').collect();
    assert_eq!(theirs.len(), xs.len());
    let mut mismatches = Vec::new();
    for (x, t) in xs.iter().zip(theirs) {
        let ours = format_f64(*x);
        if ours != t {
            mismatches.push(format!("{:016x}: ours {ours}, node {t}", x.to_bits()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} differ, e.g. {:?}",
        mismatches.len(),
        xs.len(),
        &mismatches[..mismatches.len().min(5)]
    );
}

fn random_string(rng: &mut Rng) -> String {
    const POOL: &[char] = &[
        'a',
        'Z',
        '0',
        ' ',
        '"',
        '\\',
        '/',
        '\u{0}',
        '\u{1}',
        '\u{8}',
        '\t',
        '\n',
        '\u{b}',
        '\u{c}',
        '\r',
        '\u{1f}',
        '\u{7f}',
        '\u{80}',
        'é',
        'ö',
        '€',
        '\u{2028}',
        '\u{2029}',
        '\u{d7ff}',
        '\u{e000}',
        '\u{fb33}',
        '\u{fffd}',
        '\u{ffff}',
        '\u{10000}',
        '\u{1f600}',
        '\u{1f602}',
        '\u{10ffff}',
        '<',
        '>',
        '&',
        '\'',
    ];
    let len = rng.below(8) as usize;
    (0..len)
        .map(|_| POOL[rng.below(POOL.len() as u64) as usize])
        .collect()
}

/// String escaping and member ordering agree with `JSON.stringify` and the default
/// `Array.prototype.sort` (which compares UTF-16 code units).
#[test]
fn strings_and_member_order_match_node() {
    let mut rng = Rng(42);
    let objects: Vec<Vec<String>> = (0..1_500)
        .map(|_| {
            let n = 1 + rng.below(6) as usize;
            let mut keys: Vec<String> = (0..n).map(|_| random_string(&mut rng)).collect();
            keys.sort();
            keys.dedup();
            keys
        })
        .collect();
    let input = serde_json::to_vec(&objects).unwrap();
    // Node builds each object's canonical form the way RFC 8785 §3.2 describes it.
    let script = r#"
        const objects = JSON.parse(require('fs').readFileSync(0, 'utf8'));
        const out = objects.map(keys => '{' + [...keys].sort()
            .map((k, i) => JSON.stringify(k) + ':' + JSON.stringify(k + '|' + i)).join(',') + '}');
        process.stdout.write(JSON.stringify(out));
    "#;
    let Some(out) = node(script, &input) else {
        return;
    };
    let theirs: Vec<String> = serde_json::from_str(&out).unwrap();
    for (keys, expected) in objects.iter().zip(theirs) {
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| utf16_cmp(a, b));
        let map: serde_json::Map<String, Value> = sorted
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), json!(format!("{k}|{i}"))))
            .collect();
        let ours = Canonicalizer::strict()
            .to_string(&Value::Object(map))
            .unwrap();
        assert_eq!(ours, expected, "keys {keys:?}");
    }
}
