//! The customer being onboarded, validated at the edge.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The longest name, company or external reference accepted.
pub const MAX_TEXT_CHARS: usize = 200;

/// A customer as given in a create request; see [`Customer::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Name, 1–200 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub name: String,
    /// E-mail address.
    #[cfg_attr(feature = "openapi", schema(format = Email, max_length = 254))]
    pub email: String,
    /// Company, up to 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub company: Option<String>,
    /// The caller's own reference for the customer, up to 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub external_ref: Option<String>,
    /// Free-form attributes (a JSON object), usable in request templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
}

/// One problem with a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `customer.email`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Customer {
    /// Every problem with this customer (empty when valid). Trims nothing: what is stored is
    /// what was sent.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| {
            errors.push(FieldError {
                field: format!("customer.{field}"),
                message,
            })
        };
        if self.name.trim().is_empty() {
            err("name", "must not be empty".into());
        }
        for (field, value) in [
            ("name", Some(&self.name)),
            ("company", self.company.as_ref()),
            ("external_ref", self.external_ref.as_ref()),
        ] {
            if let Some(v) = value
                && v.chars().count() > MAX_TEXT_CHARS
            {
                err(
                    field,
                    format!("must be at most {MAX_TEXT_CHARS} characters"),
                );
            }
        }
        if let Err(message) = validate_email(&self.email) {
            err("email", message);
        }
        // NUL is text nowhere: PostgreSQL refuses it in text and JSONB, so it would be a
        // server error there and an invisible byte everywhere else.
        for (field, value) in [
            ("name", Some(&self.name)),
            ("email", Some(&self.email)),
            ("company", self.company.as_ref()),
            ("external_ref", self.external_ref.as_ref()),
        ] {
            if value.is_some_and(|v| v.contains('\0')) {
                err(field, "must not contain NUL characters".into());
            }
        }
        if let Some(attributes) = &self.attributes
            && attributes
                .iter()
                .any(|(key, value)| key.contains('\0') || contains_nul(value))
        {
            err("attributes", "must not contain NUL characters".into());
        }
        errors
    }
}

/// Whether a JSON value holds a NUL character in any string or key.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.contains('\0') || contains_nul(value)),
        _ => false,
    }
}

/// A pragmatic e-mail check: one `@`, a non-empty local part, a dotted domain of sensible
/// characters, no whitespace, at most 254 characters.
pub fn validate_email(email: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "`{}` is not a valid e-mail address",
            email.chars().take(80).collect::<String>()
        ))
    };
    if email.len() > 254 || email.chars().any(char::is_whitespace) {
        return bad();
    }
    let Some((local, domain)) = email.split_once('@') else {
        return bad();
    };
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
        return bad();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_refused_in_every_field_and_attribute() {
        let mut c = customer("Ada\0", "ada@example.com");
        c.attributes = Some(
            serde_json::json!({"plan": ["pro", {"note": "x\u{0}y"}]})
                .as_object()
                .cloned()
                .expect("object"),
        );
        let fields: Vec<String> = c.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["customer.name", "customer.attributes"]);
    }

    fn customer(name: &str, email: &str) -> Customer {
        Customer {
            name: name.into(),
            email: email.into(),
            company: None,
            external_ref: None,
            attributes: None,
        }
    }

    #[test]
    fn a_normal_customer_is_valid() {
        assert!(
            customer("Ada Lovelace", "ada@example.com")
                .validate()
                .is_empty()
        );
    }

    #[test]
    fn bad_emails_are_refused() {
        for email in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@@x.com",
            "ada@x..com",
        ] {
            assert!(validate_email(email).is_err(), "{email}");
        }
    }

    #[test]
    fn names_over_200_characters_are_refused() {
        let errors = customer(&"x".repeat(201), "a@b.co").validate();
        assert_eq!(errors[0].field, "customer.name");
    }
}
