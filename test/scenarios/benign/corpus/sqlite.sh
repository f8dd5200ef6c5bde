#!/bin/bash
# sqlite: an SQLite database: import 60k CSV rows, index, aggregate,
# update in a transaction, vacuum, dump.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-sqlite-XXXXXX)
trap 'rm -rf "$d"' EXIT
sqlite3 "$d/shop.db" <<SQL
CREATE TABLE sales(id INTEGER PRIMARY KEY, shop TEXT, qty INTEGER, price REAL);
.mode csv
.import $FIX/data/sales.csv sales
CREATE INDEX by_shop ON sales(shop);
SELECT shop, count(*), round(sum(qty * price), 2) FROM sales GROUP BY shop ORDER BY 3 DESC LIMIT 3;
BEGIN;
UPDATE sales SET price = price * 1.1 WHERE qty > 40;
DELETE FROM sales WHERE qty = 0;
COMMIT;
PRAGMA journal_mode = WAL;
SELECT count(*) FROM sales WHERE price > 50;
VACUUM;
SQL
sqlite3 "$d/shop.db" .dump | gzip > "$d/dump.sql.gz"
