"""The review loop: pick what people should check (``select``), hand it to Label Studio and take their answers back
(``labelstudio``), and remember what was picked and reviewed (``ledger``)."""
