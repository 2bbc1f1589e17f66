from polymm.backtest.cli import main

raise SystemExit(main())
