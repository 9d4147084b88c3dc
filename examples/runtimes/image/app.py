def handler(event, context):
    print(f"{len(event.get('Records', []))} records")
    return {"batchItemFailures": [], "from": context.function_name}
