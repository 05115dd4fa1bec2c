//! Request bodies for tests: valid by default, each with a customer no other test uses, so
//! searches (`?q=`) find exactly what a test created.

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A fresh, valid customer: `{"name": "Customer N", "email": "customer-N@example.com"}`.
pub fn customer() -> Value {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    json!({"name": format!("Customer {n}"), "email": format!("customer-{n}@example.com")})
}

/// A create body with an explicit task list and a fresh customer.
pub fn with_tasks(tasks: &[&str]) -> Value {
    json!({"customer": customer(), "tasks": tasks})
}

/// A create body from a template and a fresh customer.
pub fn from_template(template: &str) -> Value {
    json!({"customer": customer(), "template": template})
}
