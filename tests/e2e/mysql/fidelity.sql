-- The schema and data every MySQL round trip must reproduce (tests/e2e/mysql.sh).
-- Loaded into an empty schema by the mariadb client (character_set_client utf8mb4).
SET NAMES utf8mb4;
SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION';

CREATE TABLE node (
  id INT NOT NULL AUTO_INCREMENT,
  parent_id INT NULL,
  name VARCHAR(64) NOT NULL,
  PRIMARY KEY (id),
  KEY parent (parent_id),
  CONSTRAINT node_parent FOREIGN KEY (parent_id) REFERENCES node (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE item (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  node_id INT NOT NULL,
  txt TEXT NULL,
  vc VARCHAR(200) CHARACTER SET latin1 COLLATE latin1_swedish_ci NULL,
  bin_col VARCHAR(50) COLLATE utf8mb4_bin NULL,
  blob_col LONGBLOB NULL,
  bits BIT(10) NULL,
  e ENUM('red','green','blue') NULL,
  s SET('a','b','c','d') NULL,
  dec_col DECIMAL(65,30) NULL,
  dt DATETIME(6) NULL,
  ts TIMESTAMP(3) NULL DEFAULT NULL,
  j JSON NULL,
  f DOUBLE NULL,
  price DECIMAL(10,2) NOT NULL DEFAULT 0.00,
  qty INT NOT NULL DEFAULT 1,
  total DECIMAL(12,2) AS (price * qty) STORED,
  label VARCHAR(80) AS (CONCAT(e, ':', qty)) VIRTUAL,
  PRIMARY KEY (id),
  UNIQUE KEY uk_vc (node_id, vc),
  KEY k_dt (dt),
  KEY k_total (total),
  CONSTRAINT item_node FOREIGN KEY (node_id) REFERENCES node (id)
) ENGINE=InnoDB AUTO_INCREMENT=1 DEFAULT CHARSET=utf8mb4;

CREATE TABLE doc (
  id INT NOT NULL AUTO_INCREMENT,
  title VARCHAR(200) NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (id),
  FULLTEXT KEY ft (title, body)
) ENGINE=MyISAM DEFAULT CHARSET=utf8mb4 COMMENT='non-transactional';

CREATE TABLE place (
  id INT NOT NULL AUTO_INCREMENT,
  pt POINT NOT NULL,
  area POLYGON NULL,
  PRIMARY KEY (id),
  SPATIAL KEY sp (pt)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE logbook (
  id INT NOT NULL,
  y INT NOT NULL,
  msg VARCHAR(100) NULL,
  PRIMARY KEY (id, y)
) ENGINE=InnoDB DEFAULT CHARSET=latin1
PARTITION BY RANGE (y) (
  PARTITION p2024 VALUES LESS THAN (2025),
  PARTITION p2025 VALUES LESS THAN (2026),
  PARTITION pmax VALUES LESS THAN MAXVALUE
);

CREATE TABLE legacy (
  id INT NOT NULL AUTO_INCREMENT,
  d DATE NOT NULL DEFAULT '0000-00-00',
  dt DATETIME NOT NULL DEFAULT '0000-00-00 00:00:00',
  note VARCHAR(20) NULL,
  KEY k_note (note),
  PRIMARY KEY (id)
) ENGINE=Aria DEFAULT CHARSET=utf8mb4;

CREATE TABLE plain (
  id INT NOT NULL AUTO_INCREMENT,
  a INT NOT NULL,
  b VARCHAR(30) NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY ub (b),
  KEY ka (a)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT INTO node (id, parent_id, name) VALUES (1, NULL, 'root'), (2, 1, 'child'), (3, 2, 'grandchild'),
  (4, 1, 'ünïcødé ☃'), (5, NULL, 'gone');
DELETE FROM node WHERE id = 5;

INSERT INTO item (node_id, txt, vc, bin_col, blob_col, bits, e, s, dec_col, dt, ts, j, f, price, qty) VALUES
  (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1.50, 2),
  (1, '', '', '', '', b'0', 'red', '', 0, '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000', '{}', 0, 0, 0),
  (2, '\\N', 'N', '\\', X'5C4E', b'1111111111', 'green', 'a,c', '-12345678901234567890123456789012345.123456789012345678901234567891',
   '2026-11-26 05:41:28.123456', '2038-01-19 03:14:07.999', '{"a": [1, 2.5, "x\\ny"], "emoji": "😀"}', 3.141592653589793, 99.99, 3),
  (3, 'tab\there\nnewline\r\nCRLF \\ backslash \\\\N end\\', 'café au lait', 'Ab', X'00', b'1000000001', 'blue', 'a,b,c,d',
   '0.000000000000000000000000000001', '9999-12-31 23:59:59.999999', NULL, '[null, true, false]', -1.5e-300, 0.01, 1000),
  (4, 'emoji 😀🎉 and ☃ and 𝄞', 'x\ty', 'x\ny', NULL, b'0000000001', NULL, 'd', 99999999999999999999999999999999999.999999999999999999999999999999,
   '2000-02-29 12:00:00.000001', '2000-01-01 00:00:00.001', '"just a string"', 1e300, 5, 7);
-- every byte value in one blob
INSERT INTO item (node_id, blob_col, vc, price) SELECT 2, UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR '')), 'allbytes', 1 FROM seq_0_to_255;
-- a gap in the counter: the next id must still be 10
INSERT INTO item (node_id, vc, price) VALUES (1, 'tmp1', 1), (1, 'tmp2', 1), (1, 'tmp3', 1);
DELETE FROM item WHERE vc LIKE 'tmp%';

INSERT INTO doc (title, body) VALUES ('hello', 'full text search body'), ('second', 'another document\twith tab');
INSERT INTO place (pt, area) VALUES (POINT(1.5, -2.25), NULL),
  (ST_GeomFromText('POINT(180 90)'), ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0))'));
INSERT INTO logbook VALUES (1, 2024, 'old'), (2, 2025, 'mid'), (3, 2030, NULL), (4, 2024, '');
SET SESSION sql_mode = '';
INSERT INTO legacy (d, dt, note) VALUES ('0000-00-00', '0000-00-00 00:00:00', 'zero'), ('2024-00-15', '2024-02-00 10:00:00', 'partial zero');
SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION';
INSERT INTO plain (a, b) SELECT seq % 97, CONCAT('row-', seq) FROM seq_1_to_3000;

CREATE VIEW v_items AS SELECT i.id, i.node_id, n.name, i.total FROM item i JOIN node n ON n.id = i.node_id;
CREATE VIEW v_totals AS SELECT name, SUM(total) AS total FROM v_items GROUP BY name;
-- sorts before the views it reads: the restore must order by dependency
CREATE VIEW a_top AS SELECT name FROM v_totals WHERE total > 0;
CREATE ALGORITHM=MERGE SQL SECURITY INVOKER VIEW v_plain AS SELECT id, a FROM plain WHERE a > 50 WITH CHECK OPTION;

DELIMITER //
CREATE TRIGGER item_bi BEFORE INSERT ON item FOR EACH ROW
BEGIN
  IF NEW.qty < 0 THEN SET NEW.qty = 0; END IF;
END//
CREATE TRIGGER item_bi2 BEFORE INSERT ON item FOR EACH ROW FOLLOWS item_bi SET NEW.price = ABS(NEW.price)//
CREATE TRIGGER node_ad AFTER DELETE ON node FOR EACH ROW INSERT INTO doc (title, body) VALUES ('deleted', OLD.name)//
CREATE PROCEDURE add_node(IN p_name VARCHAR(64), OUT p_id INT)
  COMMENT 'adds a node'
BEGIN
  INSERT INTO node (name) VALUES (p_name);
  SET p_id = LAST_INSERT_ID();
END//
CREATE FUNCTION node_depth(p_id INT) RETURNS INT DETERMINISTIC READS SQL DATA
BEGIN
  DECLARE d INT DEFAULT 0;
  DECLARE pid INT;
  SELECT parent_id INTO pid FROM node WHERE id = p_id;
  WHILE pid IS NOT NULL DO
    SET d = d + 1;
    SELECT parent_id INTO pid FROM node WHERE id = pid;
  END WHILE;
  RETURN d;
END//
DELIMITER ;
SET SESSION sql_mode = 'ANSI_QUOTES,NO_ENGINE_SUBSTITUTION';
CREATE EVENT purge_docs ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE
  COMMENT 'nightly' DO DELETE FROM doc WHERE title = 'deleted';
