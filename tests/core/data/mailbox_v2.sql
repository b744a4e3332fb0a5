BEGIN TRANSACTION;
CREATE TABLE in_cursor (
    from_node TEXT NOT NULL, stream TEXT NOT NULL, upto INTEGER NOT NULL, PRIMARY KEY (from_node, stream)
) WITHOUT ROWID;
INSERT INTO "in_cursor" VALUES('nodeA','91b7584a2265b1f5',5);
INSERT INTO "in_cursor" VALUES('nodeC','97b750923ceb3ffd',3);
CREATE TABLE inbox (
    local_seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    from_node TEXT NOT NULL,
    from_name TEXT NOT NULL,
    to_name TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at REAL NOT NULL,
    received_at REAL NOT NULL,
    in_reply_to TEXT NOT NULL,
    broadcast INTEGER NOT NULL,
    read_at REAL,
    receipt INTEGER NOT NULL DEFAULT 0  -- 0 none, 1 to send, 2 confirmed by the sender
);
INSERT INTO "inbox" VALUES(1,'91b7584a2265b1f5-1','nodeA','alice','bob','91b7584a2265b1f5',1,'a0','body a0',1700000000.0,1700000010.0,'',0,1700000030.0,1);
INSERT INTO "inbox" VALUES(2,'91b7584a2265b1f5-2','nodeA','alice','bob','91b7584a2265b1f5',2,'a1','body a1',1700000000.0,1700000010.0,'',0,NULL,0);
INSERT INTO "inbox" VALUES(3,'91b7584a2265b1f5-3','nodeA','alice','bob','91b7584a2265b1f5',3,'a2','body a2',1700000000.0,1700000010.0,'',0,1700000030.0,1);
INSERT INTO "inbox" VALUES(4,'91b7584a2265b1f5-4','nodeA','alice','bob','91b7584a2265b1f5',4,'all','to all',1700000001.0,1700000013.0,'',1,NULL,0);
INSERT INTO "inbox" VALUES(5,'91b7584a2265b1f5-5','nodeA','alice','bob','91b7584a2265b1f5',5,'re','a reply',1700000002.0,1700000013.0,'x-1',0,NULL,0);
INSERT INTO "inbox" VALUES(6,'97b750923ceb3ffd-1','nodeC','carol','bob','97b750923ceb3ffd',1,'c0','body c0',1700000003.0,1700000010.0,'',0,1700000030.0,2);
INSERT INTO "inbox" VALUES(7,'97b750923ceb3ffd-2','nodeC','carol','bob','97b750923ceb3ffd',2,'c1','body c1',1700000003.0,1700000010.0,'',0,NULL,0);
INSERT INTO "inbox" VALUES(8,'97b750923ceb3ffd-3','nodeC','carol','bob','97b750923ceb3ffd',3,'c2','body c2',1700000003.0,1700000012.0,'',0,1700000030.0,2);
CREATE TABLE members (
    node_id TEXT PRIMARY KEY, name TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL
) WITHOUT ROWID;
INSERT INTO "members" VALUES('nodeA','alice',1700000000.0,1700000000.0);
INSERT INTO "members" VALUES('nodeB','bob',1700000000.0,1700000000.0);
INSERT INTO "members" VALUES('nodeC','carol',1700000000.0,1700000000.0);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO "meta" VALUES('counter','1025');
INSERT INTO "meta" VALUES('node_id','nodeB');
INSERT INTO "meta" VALUES('schema','2');
INSERT INTO "meta" VALUES('stream','dcf4bb99f4bea973');
CREATE TABLE out_acks (
    to_node TEXT NOT NULL, upto INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (to_node, upto)
) WITHOUT ROWID;
INSERT INTO "out_acks" VALUES('nodeA',3,1700000045.0);
INSERT INTO "out_acks" VALUES('nodeC',3,1700000047.0);
CREATE TABLE out_seq (to_node TEXT PRIMARY KEY, next_seq INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO "out_seq" VALUES('nodeA',6);
INSERT INTO "out_seq" VALUES('nodeC',4);
CREATE TABLE outbox (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    n INTEGER NOT NULL,
    to_node TEXT NOT NULL,
    to_name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    size INTEGER NOT NULL,  -- UTF-8 bytes of subject + body, for frame byte limits
    sent_at REAL NOT NULL,
    in_reply_to TEXT NOT NULL,
    broadcast INTEGER NOT NULL,
    state INTEGER NOT NULL,
    changed_at REAL NOT NULL
);
INSERT INTO "outbox" VALUES(1,'dcf4bb99f4bea973-1',1,'nodeA','alice',1,'old','expires',10,1699308800.0,'',0,3,1700000040.0);
INSERT INTO "outbox" VALUES(2,'dcf4bb99f4bea973-2',2,'nodeA','alice',2,'k','keyed',6,1700000041.0,'',0,0,1700000041.0);
INSERT INTO "outbox" VALUES(3,'dcf4bb99f4bea973-3',3,'nodeA','alice',3,'b0','batch 0',9,1700000042.0,'',0,0,1700000042.0);
INSERT INTO "outbox" VALUES(4,'dcf4bb99f4bea973-4',4,'nodeA','alice',4,'b1','batch 1',9,1700000042.0,'',0,0,1700000042.0);
INSERT INTO "outbox" VALUES(5,'dcf4bb99f4bea973-5',5,'nodeA','alice',5,'b2','batch 2',9,1700000042.0,'',0,0,1700000042.0);
INSERT INTO "outbox" VALUES(6,'dcf4bb99f4bea973-6',6,'nodeC','carol',1,'toc0','x',5,1700000043.0,'',0,0,1700000043.0);
INSERT INTO "outbox" VALUES(7,'dcf4bb99f4bea973-7',7,'nodeC','carol',2,'toc1','x',5,1700000043.0,'',0,2,1700000049.0);
INSERT INTO "outbox" VALUES(8,'dcf4bb99f4bea973-8',8,'nodeC','carol',3,'toc2','x',5,1700000043.0,'',0,0,1700000043.0);
CREATE TABLE send_batches (
    key TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    answers TEXT NOT NULL,  -- per item its id ("" when not queued), a space between; a newline; per item
                            -- its recipient names joined by "," (ids and names hold neither character)
    at REAL NOT NULL
);
INSERT INTO "send_batches" VALUES('batch-1','dddddddddddddddddddddddddddddddd','dcf4bb99f4bea973-3 dcf4bb99f4bea973-4 dcf4bb99f4bea973-5
alice alice alice',1700000042.0);
CREATE TABLE send_keys (
    key TEXT PRIMARY KEY, id TEXT NOT NULL, recipients TEXT NOT NULL, digest TEXT NOT NULL, at REAL NOT NULL
) WITHOUT ROWID;
INSERT INTO "send_keys" VALUES('k1','dcf4bb99f4bea973-2','["alice"]','0aae2050546a74d7978ae049fb872fd8',1700000041.0);
CREATE INDEX outbox_queued ON outbox (to_node, seq) WHERE state = 0;
CREATE INDEX outbox_n ON outbox (n);
CREATE INDEX inbox_unread ON inbox (local_seq) WHERE read_at IS NULL;
CREATE INDEX inbox_receipts ON inbox (from_node) WHERE receipt = 1;
CREATE INDEX members_name ON members (name, last_seen);
COMMIT;
