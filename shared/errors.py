"""Domain errors and the one table that maps them to HTTP.

A service raises ``DomainError("code")``; the HTTP kit renders it as RFC 9457 ``application/problem+json``
with the status, zh-TW and English messages from ERRORS. Codes are stable: portals switch on them.
"""
from __future__ import annotations

from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"

# code: (HTTP status, zh-TW message, English message)
ERRORS: dict[str, tuple[int, str, str]] = {
    "malformed_json": (400, "請求內容不是有效的 JSON。", "The request body is not valid JSON."),
    "unsupported_media_type": (415, "不支援的內容類型。", "Unsupported content type."),
    "validation_failed": (422, "欄位驗證失敗。", "Some fields are invalid."),
    "payload_too_large": (413, "上傳內容超過大小上限。", "The request body is too large."),
    "unauthenticated": (401, "請先登入。", "Authentication is required."),
    "invalid_token": (401, "登入憑證無效或已過期。", "The token is invalid or expired."),
    "token_revoked": (401, "登入憑證已被撤銷，請重新登入。", "The token has been revoked; sign in again."),
    "invalid_credentials": (401, "學校代碼、帳號或密碼錯誤。", "Wrong school code, username or password."),
    "account_locked": (423, "登入失敗次數過多，帳號暫時鎖定。", "Too many failed sign-ins; the account is locked for a while."),
    "account_inactive": (403, "此帳號已停用。", "This account is deactivated."),
    "password_change_required": (403, "首次登入請先變更密碼。", "Change your initial password first."),
    "weak_password": (422, "密碼至少 10 個字元，且不可與帳號或舊密碼相同。", "Passwords need 10+ characters and must differ from the username and the old password."),
    "forbidden": (403, "您沒有執行此操作的權限。", "You are not allowed to do this."),
    "not_found": (404, "找不到資料。", "Not found."),
    "route_not_found": (404, "找不到此 API 路徑。", "No such API route."),
    "method_not_allowed": (405, "不支援此 HTTP 方法。", "Method not allowed."),
    "conflict": (409, "資料已存在或狀態衝突。", "The resource already exists or is in a conflicting state."),
    "invalid_national_id": (422, "身分證字號或居留證號格式或檢查碼錯誤。", "The national ID or resident certificate number is malformed or fails its check digit."),
    "invalid_import_file": (422, "匯入檔案無法讀取，請使用 CSV 或 XLSX。", "The import file cannot be read; use CSV or XLSX."),
    "invalid_course_code": (422, "課程代碼須為 23 碼英數字。", "A course code has exactly 23 letters or digits."),
    "invalid_term": (422, "學期代碼格式錯誤（例：11201）。", "Malformed term code (e.g. 11201)."),
    "not_enrolled": (422, "你沒有修習這門課程。", "You are not enrolled in this course section."),
    "uploads_closed": (409, "目前不在上傳期間。", "Uploads are closed now."),
    "upload_cap_reached": (409, "已達本學期（學年）上傳件數上限。", "The upload cap for this term (year) is reached."),
    "item_locked": (409, "此項目已送出認證或已勾選，不能修改。", "This item is submitted or selected and cannot be changed."),
    "invalid_transition": (409, "目前狀態不允許此操作。", "This action is not allowed in the current state."),
    "submission_exists": (409, "此學期（學年）已提交過，請以更正封包處理疑義。",
                          "This term (year) was submitted already; correct it with a correction package."),
    "submission_busy": (409, "此提交仍有封包正在產生或傳送，請稍後再試。",
                        "A package of this submission is still being built or sent; try again later."),
    "submission_final": (409, "此提交已定案，不能再變更。", "This submission is final; nothing on it can change."),
    "disputes_open": (409, "尚有未處理的疑義，不能定案或確認收訖明細。",
                      "Disputes are still open; the submission cannot be made final nor the receipt confirmed."),
    "confirmation_window_closed": (409, "目前不在收訖明細確認期間，不能確認收訖明細。",
                                   "Receipts can be confirmed only during the receipt confirmation window."),
    "dispute_window_closed": (409, "目前不在收訖明細確認期間，不能提出疑義。",
                              "Disputes can be raised only during the receipt confirmation window."),
    "submission_window_closed": (409, "目前不在提交期間。", "Submissions can be made only during the submission window."),
    "nothing_changed": (409, "資料與已提交的內容相同，沒有需要更正的資料列（請先在原服務修正資料）。",
                        "No row differs from what was sent; fix the data in its owning service first."),
    "term_final": (409, "本學期提交的資料已定案，不能再變更。", "This term's submitted data is final and can no longer change."),
    "year_final": (409, "本學年提交的資料已定案，不能再變更。", "This school year's submitted data is final and can no longer change."),
    "file_too_large": (413, "檔案超過大小上限。", "The file is larger than allowed."),
    "file_empty": (422, "檔案是空的。", "The file is empty."),
    "file_type_not_allowed": (415, "檔案類型不符（文件限 PDF/JPG/PNG，影音限 MP3/MP4），以檔案內容判斷。",
                              "File type not allowed (documents: PDF/JPG/PNG; media: MP3/MP4), judged by its content."),
    "file_corrupt": (422, "檔案不完整或已損毀。", "The file is truncated or damaged."),
    "file_encrypted": (422, "檔案有密碼保護，請上傳未加密的檔案。", "The file is password-protected; upload it unencrypted."),
    "file_polyglot": (422, "檔案同時夾帶其他格式的內容，基於安全不予接受。", "The file carries content of another format and is refused."),
    "invalid_file_name": (422, "檔名含不允許的字元。", "The file name has characters that are not allowed."),
    "checksum_mismatch": (422, "檔案檢查碼不符，傳輸可能中斷，請重新上傳。", "The file's checksum does not match; upload it again."),
    "direct_upload_unavailable": (409, "此系統的檔案儲存不支援直接上傳，請改用一般上傳（PUT …/files/<key>）。",
                                  "Direct uploads are not available with this file store; upload through PUT …/files/<key>."),
    "upload_not_received": (409, "儲存服務尚未收到檔案，請先上傳檔案再按完成。",
                            "The store has not received the file yet; PUT it first, then complete."),
    "upload_expired": (410, "上傳連結已過期，請重新開始上傳。", "This upload has expired; start a new one."),
    "storage_unavailable": (503, "檔案儲存服務暫時無法使用，請稍後再試。", "File storage is temporarily unavailable; retry later."),
    "rate_limited": (429, "請求過於頻繁，請稍後再試。", "Too many requests; retry later."),
    "documents_unavailable": (503, "資料庫暫時無法使用，請稍後再試。", "The document store is temporarily unavailable; retry later."),
    "upstream_unavailable": (503, "服務暫時無法使用，請稍後再試。", "A service is temporarily unavailable; retry later."),
    "upstream_timeout": (504, "服務回應逾時，請稍後再試。", "A service did not answer in time; retry later."),
    "internal_error": (500, "系統發生錯誤，已記錄並將處理。", "Something went wrong on our side; it has been logged."),
}


class DomainError(Exception):
    """A failure the caller can act on. ``code`` must be a key of ERRORS."""

    def __init__(self, code: str, detail: str | None = None, *, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        if code not in ERRORS:
            raise KeyError(f"unknown error code {code!r}: add it to shared.errors.ERRORS")
        super().__init__(detail or code)
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra

    @property
    def status(self) -> int:
        return ERRORS[self.code][0]


def problem(code: str, detail: str | None = None, *, errors: list[dict] | None = None,
            request_id: str | None = None, **extra: Any) -> dict:
    """The problem+json body for ``code``."""
    status, zh, en = ERRORS[code]
    body: dict[str, Any] = {
        "type": f"urn:footprint:problem:{code}",
        "title": en,
        "status": status,
        "code": code,
        "message": {"zh-TW": zh, "en": en},
    }
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return body


def field_error(field: str, code: str, en: str, zh: str) -> dict:
    """One entry of a problem's ``errors`` list (also used for import row reports)."""
    return {"field": field, "code": code, "message": {"zh-TW": zh, "en": en}}
