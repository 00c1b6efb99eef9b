-- What every test starts with: stock per item. Loaded after schema.sql on a fresh start, and after
-- the reset's TRUNCATE when a test gets the server kept from an earlier one (shop.star).
INSERT INTO stock (sku, quantity) VALUES ('widget', 100), ('gadget', 5);
