-- The demo's shop: real tables, and SQL handlers that do real work on them.
-- Each handler receives {"task_id", "step_id", "step_name", "attempt",
-- "context", "dependencies"} and returns its results as jsonb.
CREATE SCHEMA shop;

CREATE TABLE shop.products (sku text PRIMARY KEY, price_cents int NOT NULL, stock int NOT NULL,
                            reserved int NOT NULL DEFAULT 0, CHECK (reserved <= stock));
CREATE TABLE shop.orders (order_id int PRIMARY KEY, customer text NOT NULL,
                          status text NOT NULL DEFAULT 'new', total_cents int);
CREATE TABLE shop.order_lines (order_id int REFERENCES shop.orders, sku text REFERENCES shop.products,
                               qty int NOT NULL CHECK (qty > 0), PRIMARY KEY (order_id, sku));
CREATE TABLE shop.payments (order_id int PRIMARY KEY REFERENCES shop.orders, amount_cents int NOT NULL,
                            charged_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE shop.shipments (order_id int PRIMARY KEY REFERENCES shop.orders, tracking text NOT NULL);
CREATE TABLE shop.notifications (order_id int REFERENCES shop.orders, message text NOT NULL);

INSERT INTO shop.products
SELECT 'SKU-' || i, 500 + i * 25, 100000, 0 FROM generate_series(1, 20) i;

-- validate_order: the order exists and has lines; computes the total.
CREATE FUNCTION shop.validate_order(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    oid int := (input #>> '{context,order_id}')::int;
    total int;
BEGIN
    SELECT sum(l.qty * p.price_cents) INTO total
      FROM shop.order_lines l JOIN shop.products p USING (sku) WHERE l.order_id = oid;
    IF total IS NULL THEN
        RAISE EXCEPTION 'order % has no lines', oid USING ERRCODE = 'TK001';
    END IF;
    UPDATE shop.orders SET status = 'validated', total_cents = total WHERE order_id = oid;
    RETURN jsonb_build_object('order_id', oid, 'total_cents', total);
END $$;

-- reserve_inventory: holds stock for every line (the CHECK refuses overselling).
CREATE FUNCTION shop.reserve_inventory(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    oid int := (input #>> '{context,order_id}')::int;
    n int;
BEGIN
    -- lock the products in sku order, as ship_order does: two orders
    -- sharing products never wait for each other in a circle
    PERFORM FROM shop.products p JOIN shop.order_lines l ON l.sku = p.sku
     WHERE l.order_id = oid ORDER BY p.sku FOR UPDATE OF p;
    UPDATE shop.products p SET reserved = p.reserved + l.qty
      FROM shop.order_lines l WHERE l.order_id = oid AND l.sku = p.sku;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN jsonb_build_object('lines_reserved', n);
END $$;

-- charge_payment: records the charge.  The gateway "times out" on the first
-- attempt for one order in ten: the attempt rolls back and is retried.
CREATE FUNCTION shop.charge_payment(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    oid int := (input #>> '{context,order_id}')::int;
    amount int := (input #>> '{dependencies,validate_order,total_cents}')::int;
BEGIN
    INSERT INTO shop.payments (order_id, amount_cents) VALUES (oid, amount);
    IF oid % 10 = 0 AND (input->>'attempt')::int = 1 THEN
        RAISE EXCEPTION 'payment gateway timed out for order %', oid
            USING HINT = 'tasker retries it after a short backoff';
    END IF;
    RETURN jsonb_build_object('charged_cents', amount);
END $$;

-- ship_order: needs the stock reserved and the payment taken.
CREATE FUNCTION shop.ship_order(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    oid int := (input #>> '{context,order_id}')::int;
    tracking text := 'TRK' || lpad(oid::text, 8, '0');
BEGIN
    INSERT INTO shop.shipments VALUES (oid, tracking);
    PERFORM FROM shop.products p JOIN shop.order_lines l ON l.sku = p.sku
     WHERE l.order_id = oid ORDER BY p.sku FOR UPDATE OF p;
    UPDATE shop.products p SET stock = p.stock - l.qty, reserved = p.reserved - l.qty
      FROM shop.order_lines l WHERE l.order_id = oid AND l.sku = p.sku;
    UPDATE shop.orders SET status = 'shipped' WHERE order_id = oid;
    RETURN jsonb_build_object('tracking', tracking);
END $$;

-- notify_customer: writes the message the customer gets.
CREATE FUNCTION shop.notify_customer(input jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    oid int := (input #>> '{context,order_id}')::int;
BEGIN
    INSERT INTO shop.notifications
    SELECT oid, format('Dear %s, order %s is on its way (%s).', customer, oid,
                       input #>> '{dependencies,ship_order,tracking}')
      FROM shop.orders WHERE order_id = oid;
    RETURN jsonb_build_object('notified', true);
END $$;

-- reserve_inventory and ship_order lock products that many orders share, in
-- sku order; an executor's transaction may still hold several handlers'
-- locks.  A deadlock is not a failure: the handler it aborts runs again at
-- the same attempt.
SELECT tasker.register_template($$ {
  "namespace": "shop",
  "name": "order_fulfillment",
  "version": "1.0.0",
  "description": "validate, then reserve stock and charge in parallel, then ship and notify",
  "context_schema": {"type": "object", "required": ["order_id"],
                     "properties": {"order_id": {"type": "integer"}}},
  "identity_strategy": "strict",
  "steps": [
    {"name": "validate_order",    "handler": "shop.validate_order(jsonb)"},
    {"name": "reserve_inventory", "handler": "shop.reserve_inventory(jsonb)", "depends_on": ["validate_order"]},
    {"name": "charge_payment",    "handler": "shop.charge_payment(jsonb)", "depends_on": ["validate_order"],
                                  "max_attempts": 3, "timeout": "10 seconds"},
    {"name": "ship_order",        "handler": "shop.ship_order(jsonb)", "depends_on": ["reserve_inventory", "charge_payment"]},
    {"name": "notify_customer",   "handler": "shop.notify_customer(jsonb)", "depends_on": ["ship_order"]}
  ]} $$) AS template_id;
