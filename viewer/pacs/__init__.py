"""DICOM networking with a PACS: the node list, connection tests, query (C-FIND / QIDO-RS) and retrieve
(C-GET / C-MOVE / WADO-RS) into a private per-user store whose files enter the header index as they arrive.

Qt-free: the CLI (``gru-viewer pacs``) and the GUI's workers call the same functions in :mod:`.service`.
"""
