from softthink.cli import main

raise SystemExit(main())
