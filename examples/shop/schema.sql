-- The shop's database. Applied to a fresh PostgreSQL by the spec's seed (shop.star:
-- db = postgres("db", seed = ..., reuse = True) runs load_file("schema.sql"), then data.sql); later
-- tests get the same server back, emptied by its reset and given data.sql again.

-- Orders accepted by the api. A row exists only once its transaction committed.
CREATE TABLE orders (
    order_id   text PRIMARY KEY,
    sku        text NOT NULL,
    qty        integer NOT NULL CHECK (qty > 0),
    status     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Stock per item, reserved by the inventory consumer from the order-events topic.
CREATE TABLE stock (
    sku      text PRIMARY KEY,
    quantity integer NOT NULL
);

-- Orders the inventory has already applied: a redelivered message is skipped (idempotency).
CREATE TABLE processed (
    order_id     text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Note for fault design: `orders` starts empty (TRUNCATE gives it a new, empty file), so the first
-- INSERT of a test extends its file.
-- A failed write there is an ordinary ERROR ("could not extend file"), not a PANIC: PostgreSQL
-- stays up and the test can look at what it left behind.
