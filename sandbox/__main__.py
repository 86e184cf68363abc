from stockade.cli import main

raise SystemExit(main())
